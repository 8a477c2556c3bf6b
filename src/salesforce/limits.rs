//! The `Sforce-Limit-Info` header: `api-usage=USED/LIMIT`, optionally followed
//! by `; api-bursts=N/M`. Split on `;`, never match the whole value, so an
//! added element does not blind the quota guard.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub limit: u64,
}

pub fn parse_limit_info(value: &str) -> Option<ApiUsage> {
    value.split(';').find_map(|part| {
        let (name, counts) = part.trim().split_once('=')?;
        if name.trim() != "api-usage" {
            return None;
        }
        let (used, limit) = counts.trim().split_once('/')?;
        Some(ApiUsage { used: used.trim().parse().ok()?, limit: limit.trim().parse().ok()? })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_bursts() {
        assert_eq!(parse_limit_info("api-usage=10018/100000"), Some(ApiUsage { used: 10018, limit: 100000 }));
        assert_eq!(
            parse_limit_info("api-usage=10018/100000; api-bursts=1/750"),
            Some(ApiUsage { used: 10018, limit: 100000 })
        );
        assert_eq!(parse_limit_info("api-bursts=1/750;api-usage=5/15000"), Some(ApiUsage { used: 5, limit: 15000 }));
        assert_eq!(parse_limit_info("per-app-api-usage=17/250(appName=x)"), None);
        assert_eq!(parse_limit_info("api-usage=x/y"), None);
    }
}
