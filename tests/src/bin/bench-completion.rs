//! `bench-completion` (issue 14, item 5, part of `make bench`): what following one import job to
//! its end costs with event-driven completion and with polling, side by side: state transitions
//! per job for 5-minute, 1-hour and 6-hour jobs, completion latency, and a dropped event. See
//! `healthimport_tests::bench_completion`.
//!
//!   bench-completion measure                  on the stack of this environment (BENCH_MODE,
//!                                             BENCH_TIME_SCALE, BENCH_OUT; see the module)
//!   bench-completion report EVENTS POLLING    one table from both measurements (JSON files;
//!                                             a missing one is reported as not measured)
//!
//! `scripts/bench-completion.sh` starts an events stack and a polling stack, measures both side
//! by side and reports. `report` exits 1 when events mode misses a target; both exit 2 on an
//! error.

use std::path::Path;
use std::process::ExitCode;

use healthimport_tests::bench_completion::{
    measure, read_run, render, verdicts, Settings, TemplateDefaults,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["measure"] => run_measure().await.map(|()| true),
        ["report", events, polling] => run_report(Path::new(events), Path::new(polling)),
        _ => {
            eprintln!("usage: bench-completion measure | bench-completion report EVENTS.json POLLING.json");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("bench-completion failed: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

async fn run_measure() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let run = measure(&settings).await?;
    std::fs::write(&settings.out, serde_json::to_vec_pretty(&run)?)
        .map_err(|e| format!("{}: {e}", settings.out.display()))?;
    eprintln!(
        "{} mode measured in {:.0} s: {}",
        run.mode.as_str(),
        run.wall_seconds,
        settings.out.display()
    );
    Ok(())
}

fn run_report(events: &Path, polling: &Path) -> Result<bool, BoxError> {
    let events = read_run(events)?;
    let polling = read_run(polling)?;
    let aws = TemplateDefaults::read()?;
    print!("{}", render(events.as_ref(), polling.as_ref(), &aws));
    Ok(verdicts(events.as_ref())
        .iter()
        .all(|v| v.met == Some(true)))
}
