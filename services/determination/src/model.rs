//! The welfare (PMT) model a determination scores with.

/// The welfare model shipped with the service (`pmt-model.json`).
pub(crate) const DEFAULT_MODEL: &str = include_str!("../pmt-model.json");

/// The welfare model: the file named by `DTKS_DETERMINATION_MODEL` (a ministry's own
/// estimate), or the one shipped. A file that does not parse stops the service.
pub(crate) fn load_model() -> anyhow::Result<dtks_domain::pmt::Model> {
    let (text, source) = match std::env::var("DTKS_DETERMINATION_MODEL") {
        Ok(path) if !path.is_empty() => (std::fs::read_to_string(&path)?, path),
        _ => (
            DEFAULT_MODEL.to_owned(),
            "pmt-model.json (shipped)".to_owned(),
        ),
    };
    dtks_domain::pmt::Model::from_json(&text)
        .map_err(|e| anyhow::anyhow!("welfare model {source}: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_model_file_is_the_default_model() {
        assert_eq!(
            dtks_domain::pmt::Model::from_json(super::DEFAULT_MODEL),
            Ok(dtks_domain::pmt::Model::default())
        );
    }
}
