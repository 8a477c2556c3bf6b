//! Operator commands that read the database and run nothing: `status`.
//! (`connector audit` reads the audit trail through [`crate::audit::query`].)

pub mod status;

use crate::config::HarnessConfig;

/// The tenant's `salesforce_max_api_share`: its config's, else the default.
pub fn api_ceiling(config: &HarnessConfig) -> Option<f64> {
    const NAME: &str = "salesforce_max_api_share";
    let text =
        config.settings_text().get(NAME).cloned().or_else(|| {
            netsuite_salesforce::settings::catalog::find(NAME).and_then(|s| s.default.map(str::to_string))
        })?;
    text.trim().parse().ok()
}
