//! The benches' settings from their environment, read the way the functions read theirs
//! (`healthimport::config`: trimmed, blank as unset, a bad value named with the variable).

use healthimport::config::{self, Env};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any lookup (the process environment, or a test's map) as the functions' [`Env`].
pub struct Lookup<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env for Lookup<F> {
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    pub fn get(&self, name: &str) -> Option<String> {
        config::optional(self, name)
    }

    /// A whole number, `default` when unset.
    pub fn count(&self, name: &str, default: usize) -> Result<usize, BoxError> {
        Ok(config::parsed_or(self, name, default)?)
    }

    /// `BENCH_TIME_SCALE`: local seconds per AWS second, in (0, 1]. Required: `how_to_run` says
    /// which script sets it together with the double's timings.
    pub fn time_scale(&self, how_to_run: &str) -> Result<f64, BoxError> {
        let text = self
            .get("BENCH_TIME_SCALE")
            .ok_or_else(|| format!("BENCH_TIME_SCALE is not set: {how_to_run}"))?;
        let scale: f64 = text
            .parse()
            .map_err(|_| format!("BENCH_TIME_SCALE={text:?}: expected a number"))?;
        if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
            return Err(format!("BENCH_TIME_SCALE={text}: must be in (0, 1]").into());
        }
        Ok(scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(
        pairs: &'static [(&'static str, &'static str)],
    ) -> Lookup<impl Fn(&str) -> Option<String>> {
        Lookup(move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let env = lookup(&[("N", " 12 "), ("BAD", "x"), ("BENCH_TIME_SCALE", "0.1")]);
        assert_eq!(env.count("N", 3).unwrap(), 12);
        assert_eq!(env.count("UNSET", 3).unwrap(), 3);
        assert!(env.count("BAD", 3).unwrap_err().to_string().contains("BAD"));
        assert_eq!(env.time_scale("run it").unwrap(), 0.1);
        for bad in ["0", "2", "soon"] {
            let env =
                Lookup(move |name: &str| (name == "BENCH_TIME_SCALE").then(|| bad.to_owned()));
            assert!(env.time_scale("run it").is_err(), "{bad}");
        }
        let err = lookup(&[]).time_scale("run it through x.sh").unwrap_err();
        assert!(err.to_string().contains("x.sh"), "{err}");
    }
}
