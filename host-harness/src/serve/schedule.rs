//! When a tenant's scheduled runs start: a cron expression (croner: five
//! fields, or six with seconds first) or a fixed interval, each start
//! delayed by a random jitter so tenants on one schedule do not all call
//! NetSuite and Salesforce in the same second.

use crate::config::ScheduleConfig;
use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The longest interval or jitter a schedule takes (a year): date
/// arithmetic on far larger ones overflows.
pub const MAX_INTERVAL_SECS: u64 = 365 * 86_400;

#[derive(Debug, Clone)]
enum When {
    Cron(Box<croner::Cron>),
    Every(Duration),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    when: When,
    jitter: Duration,
}

/// What croner lets pass but a reader would not mean: other than five or
/// six fields (a seventh, the year, is not cron as README gives it), and a
/// step past its field's range (`*/61` minutes runs hourly).
fn check_fields(expr: &str) -> Result<()> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let names: &[(&str, u32)] = match fields.len() {
        5 => &[("minute", 59), ("hour", 23), ("day", 31), ("month", 12), ("weekday", 7)],
        6 => &[("second", 59), ("minute", 59), ("hour", 23), ("day", 31), ("month", 12), ("weekday", 7)],
        n => bail!("it has {n} fields"),
    };
    for (field, (name, most)) in fields.iter().zip(names) {
        for part in field.split(',') {
            let Some((_, step)) = part.split_once('/') else { continue };
            match step.parse::<u32>() {
                Ok(step) if (1..=*most).contains(&step) => {}
                _ => bail!("the {name} step `/{step}` is not between 1 and {most}"),
            }
        }
    }
    Ok(())
}

impl Schedule {
    pub fn from_config(config: &ScheduleConfig) -> Result<Schedule> {
        let when = match (&config.cron, config.every_secs) {
            (Some(_), Some(_)) => bail!("give `cron` or `every_secs`, not both"),
            (None, None) => bail!("give `cron` (e.g. \"*/15 * * * *\") or `every_secs` (e.g. 900)"),
            (None, Some(0)) => bail!("`every_secs` is 0: give the seconds between runs, e.g. 900"),
            (None, Some(secs)) if secs > MAX_INTERVAL_SECS => {
                bail!("`every_secs` is {secs}: give at most {MAX_INTERVAL_SECS} (a year), e.g. 900")
            }
            (None, Some(secs)) => When::Every(Duration::from_secs(secs)),
            (Some(expr), None) => match check_fields(expr).and_then(|()| Ok(expr.parse::<croner::Cron>()?)) {
                Ok(cron) => When::Cron(Box::new(cron)),
                Err(e) => bail!(
                    "`cron` = {expr:?} is not a cron expression ({e}): five fields (minute 0-59, hour 0-23, day \
                     1-31, month 1-12, weekday 0-7), or six with seconds (0-59) first, e.g. \"*/15 * * * *\""
                ),
            },
        };
        if config.jitter_secs > MAX_INTERVAL_SECS {
            bail!("`jitter_secs` is {}: give at most {MAX_INTERVAL_SECS} (a year), e.g. 60", config.jitter_secs);
        }
        Ok(Schedule { when, jitter: Duration::from_secs(config.jitter_secs) })
    }

    /// The first start strictly after `after`, before jitter.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
            When::Every(every) => Some(after + *every),
        }
    }

    /// How long from `now` until the next start, before jitter: none when
    /// one was missed since the `last` run started; else the start after
    /// that run, which a reload or restart in between keeps (not an
    /// interval from now). None: a cron expression with no start left.
    pub fn until_next(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
        if self.missed(last, now) {
            return Some(Duration::ZERO);
        }
        let next = self.next_after(last?)?;
        Some((next - now).to_std().unwrap_or_default())
    }

    /// Whether a start was due between the last run (`last`, None if the
    /// tenant never ran) and `now`: the process was down or busy then, and
    /// one run catches up (once, however many starts were missed).
    pub fn missed(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        let Some(last) = last else { return true };
        self.next_after(last).is_some_and(|due| due <= now)
    }

    /// Seconds between starts; 0 for a cron schedule.
    pub fn interval_secs(&self) -> u64 {
        match &self.when {
            When::Cron(_) => 0,
            When::Every(every) => every.as_secs(),
        }
    }

    /// A random delay in `[0, jitter]`.
    pub fn jitter(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::random::<u64>() % (self.jitter.as_millis() as u64 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn cron(expr: &str) -> Schedule {
        Schedule::from_config(&ScheduleConfig { cron: Some(expr.into()), ..Default::default() }).unwrap()
    }

    #[test]
    fn cron_takes_five_fields_or_six_with_seconds() {
        assert_eq!(cron("*/15 * * * *").next_after(at("2026-12-02T10:07:30Z")), Some(at("2026-12-02T10:15:00Z")));
        assert_eq!(cron("30 */15 * * * *").next_after(at("2026-12-02T10:15:30Z")), Some(at("2026-12-02T10:30:30Z")));
        assert_eq!(cron("0 2 * * 1").next_after(at("2026-12-02T10:00:00Z")), Some(at("2026-12-07T02:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        let bad = |c: ScheduleConfig| Schedule::from_config(&c).unwrap_err().to_string();
        assert!(bad(ScheduleConfig::default()).contains("give `cron`"));
        let e = bad(ScheduleConfig { cron: Some("every hour".into()), ..Default::default() });
        assert!(e.contains("\"every hour\" is not a cron expression"), "{e}");
        for (expr, said) in [
            ("* * * * * * *", "7 fields"),
            ("*/61 * * * *", "minute step `/61`"),
            ("0 */25 * * *", "hour step `/25`"),
            ("*/0 * * * * *", "second step `/0`"),
        ] {
            let e = bad(ScheduleConfig { cron: Some(expr.into()), ..Default::default() });
            assert!(e.contains(said) && e.contains("five fields"), "{expr}: {e}");
        }
        let e = bad(ScheduleConfig { cron: Some("* * * * *".into()), every_secs: Some(5), jitter_secs: 0 });
        assert!(e.contains("not both"), "{e}");
        assert!(bad(ScheduleConfig { every_secs: Some(0), ..Default::default() }).contains("`every_secs` is 0"));
    }

    #[test]
    fn a_start_missed_while_down_is_caught_up_once() {
        let s = cron("0 * * * *");
        assert!(s.missed(None, at("2026-12-02T10:30:00Z")), "never ran");
        assert!(!s.missed(Some(at("2026-12-02T10:00:05Z")), at("2026-12-02T10:59:59Z")));
        assert!(s.missed(Some(at("2026-12-02T07:00:05Z")), at("2026-12-02T10:30:00Z")), "down for three starts");
        let every = Schedule::from_config(&ScheduleConfig { every_secs: Some(600), ..Default::default() }).unwrap();
        assert!(!every.missed(Some(at("2026-12-02T10:00:00Z")), at("2026-12-02T10:09:59Z")));
        assert!(every.missed(Some(at("2026-12-02T10:00:00Z")), at("2026-12-02T10:10:00Z")));
    }

    /// A tenant reloaded (or the process restarted) 10 s after a run of
    /// every 20 s runs 10 s later, not 20: the interval counts from the
    /// last run's start.
    #[test]
    fn the_next_start_counts_from_the_last_run_not_from_a_reload() {
        let every = Schedule::from_config(&ScheduleConfig { every_secs: Some(20), ..Default::default() }).unwrap();
        let ran = at("2026-12-02T10:00:00Z");
        assert_eq!(every.until_next(Some(ran), at("2026-12-02T10:00:10Z")), Some(Duration::from_secs(10)));
        assert_eq!(every.until_next(Some(ran), at("2026-12-02T10:00:25Z")), Some(Duration::ZERO), "missed");
        assert_eq!(every.until_next(None, ran), Some(Duration::ZERO), "never ran");
        let hourly = cron("0 * * * *");
        assert_eq!(hourly.until_next(Some(ran), at("2026-12-02T10:59:00Z")), Some(Duration::from_secs(60)));
    }

    #[test]
    fn intervals_past_a_year_are_refused_before_date_arithmetic_overflows() {
        let bad = |c: ScheduleConfig| Schedule::from_config(&c).unwrap_err().to_string();
        let e = bad(ScheduleConfig { every_secs: Some(300_000_000_000), ..Default::default() });
        assert!(e.contains("`every_secs` is 300000000000: give at most 31536000"), "{e}");
        let e = bad(ScheduleConfig { every_secs: Some(60), jitter_secs: u64::MAX, cron: None });
        assert!(e.contains("`jitter_secs`"), "{e}");
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let s = Schedule::from_config(&ScheduleConfig { every_secs: Some(60), jitter_secs: 2, cron: None }).unwrap();
        let delays: Vec<Duration> = (0..200).map(|_| s.jitter()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays.iter().any(|d| *d != delays[0]), "random, not one fixed delay");
    }
}
