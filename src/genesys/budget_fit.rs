//! Whether an org fits its request budget, and the fix, with numbers, when it does not.
//!
//! The observation poll is planned ([`budget::plan`]) within what the queue-list refresh
//! and the KPI poll leave: the KPIs at the rate their poller really uses, widened by
//! [`budget::kpi_poll`], not at `KPI_POLL` (which reserved 240/min for 20,000 queues whose
//! KPI poll then took 50/min, and squeezed the observations out). When even one poll per
//! window does not fit, the service still starts, polling once per window, and says what
//! would make it fit: more instances with `QUEUE_SHARD` (each with its own OAuth client),
//! a larger `GENESYS_REQUESTS_PER_MINUTE`, or `KPIS=off`. `check` prints the same.
//!
//! Pure: the settings and counts are values, so the README's scaling table is computed
//! from [`plan_for`] by a test.

use std::time::Duration;

use super::budget::{self, PollPlan};
use super::limits::MAX_QUEUES_PER_REQUEST;

/// The settings the budget depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    pub poll_interval: Duration,
    pub window: Duration,
    /// `GENESYS_REQUESTS_PER_MINUTE`.
    pub requests_per_minute: u32,
    pub queue_refresh: Duration,
    /// `KPI_POLL`, when KPIs are on.
    pub kpi_poll: Option<Duration>,
}

/// The queue counts the budget depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Org {
    /// Queues this instance polls (its shard of `selected`).
    pub polled: usize,
    /// Queues `GENESYS_QUEUES` selects, over all shards.
    pub selected: usize,
    /// Queues in the listing every refresh reads in full (sharding comes after it).
    pub listed: usize,
}

impl BudgetSettings {
    /// The settings of the service (`run`) as configured.
    pub fn of(config: &crate::config::Config) -> BudgetSettings {
        BudgetSettings {
            poll_interval: config.poll_interval,
            window: config.window,
            requests_per_minute: config.genesys.requests_per_minute,
            queue_refresh: config.queue_refresh,
            kpi_poll: config.kpi.map(|kpi| kpi.poll),
        }
    }
}

impl Org {
    /// One instance polling all of `queues`.
    #[cfg(test)]
    pub fn whole(queues: usize) -> Org {
        Org {
            polled: queues,
            selected: queues,
            listed: queues,
        }
    }
}

/// A hash shard is not exactly `1/n` of the queues: sharding advice allows this much more.
const SHARD_IMBALANCE: f64 = 1.05;
/// Sharding advice goes no further than this many instances.
const MAX_SHARDS: usize = 1000;

/// Requests per minute the observation poll must leave to the queue-list refresh (every
/// page of the full listing) and the KPI poll (at its widened period) of `polled` queues.
pub fn reserved_per_minute(org: Org, settings: &BudgetSettings, budget: u32) -> u32 {
    let refresh = budget::requests_per_minute(org.listed, settings.queue_refresh);
    let kpi = settings.kpi_poll.map_or(0, |configured| {
        let poll = budget::kpi_poll(org.polled, configured, budget);
        budget::requests_per_minute(org.polled, poll)
    });
    refresh.saturating_add(kpi)
}

/// The plan of one instance, with `budget` requests per minute.
fn plan_with(org: Org, settings: &BudgetSettings, budget: u32) -> PollPlan {
    budget::plan(
        org.polled,
        settings.poll_interval,
        settings.window,
        budget,
        reserved_per_minute(org, settings, budget),
    )
}

/// The observation poll's plan for `org`, with the advice when it is over the budget.
pub fn plan_for(org: Org, settings: &BudgetSettings) -> PollPlan {
    let mut plan = plan_with(org, settings, settings.requests_per_minute);
    if plan.over_budget {
        plan.advice = Some(advice(org, settings, &plan));
    }
    plan
}

/// Instances (`QUEUE_SHARD=i/n`, each its own OAuth client and budget) that poll every
/// selected queue at least once per window.
fn shards_needed(org: Org, settings: &BudgetSettings) -> Option<usize> {
    (2..=MAX_SHARDS).find(|&n| {
        let share = (org.selected as f64 * SHARD_IMBALANCE / n as f64).ceil() as usize;
        let shard = Org {
            polled: share.min(org.selected),
            ..org
        };
        !plan_with(shard, settings, settings.requests_per_minute).over_budget
    })
}

/// The smallest `GENESYS_REQUESTS_PER_MINUTE` with which this instance fits: between
/// what one poll per window needs alone and what it needs with the KPIs never widened.
fn budget_needed(org: Org, settings: &BudgetSettings) -> Option<u32> {
    let chunks = org.polled.div_ceil(MAX_QUEUES_PER_REQUEST) as f64;
    let per_window = chunks * 60.0 / settings.window.as_secs_f64().max(1.0);
    let unwidened_kpis = settings
        .kpi_poll
        .map_or(0, |poll| budget::requests_per_minute(org.polled, poll));
    let refresh = budget::requests_per_minute(org.listed, settings.queue_refresh);
    let needed = |requests: f64| (requests / budget::PLANNED_SHARE).ceil() as u32;
    let floor = needed(per_window).max(settings.requests_per_minute.saturating_add(1));
    let ceiling = needed(per_window + f64::from(refresh) + f64::from(unwidened_kpis));
    (floor..=ceiling.max(floor)).find(|&budget| !plan_with(org, settings, budget).over_budget)
}

fn advice(org: Org, settings: &BudgetSettings, plan: &PollPlan) -> String {
    let mut fixes = Vec::new();
    if let Some(n) = shards_needed(org, settings) {
        let list = if n <= 4 {
            let all: Vec<String> = (1..=n).map(|i| format!("{i}/{n}")).collect();
            format!("{} and {}", all[..n - 1].join(", "), all[n - 1])
        } else {
            format!("1/{n} … {n}/{n}")
        };
        fixes.push(format!(
            "run {n} instances with QUEUE_SHARD={list}, each with its own OAuth client"
        ));
    }
    if let Some(budget) = budget_needed(org, settings) {
        fixes.push(format!(
            "set GENESYS_REQUESTS_PER_MINUTE={budget} if Genesys Cloud allows this OAuth client that many"
        ));
    }
    if settings.kpi_poll.is_some() {
        let without = BudgetSettings {
            kpi_poll: None,
            ..*settings
        };
        if !plan_with(org, &without, settings.requests_per_minute).over_budget {
            fixes.push("set KPIS=off".into());
        }
    }
    let total = plan.requests_per_minute + f64::from(plan.reserved_per_minute);
    let consequence = if total > f64::from(plan.budget_per_minute) {
        "more than the whole budget, so requests will be held back or refused (429) and some queues will miss windows"
    } else {
        "little is left for retries"
    };
    format!(
        "the request budget is too small for {} queues: even once per {}s window they need \
         {}/min, plus {}/min for the queue refresh and KPIs, over {}% of \
         GENESYS_REQUESTS_PER_MINUTE={} ({}/min); polling once per window anyway ({consequence}). \
         To fit: {}",
        org.polled,
        settings.window.as_secs(),
        plan.requests_per_minute.ceil(),
        plan.reserved_per_minute,
        (budget::PLANNED_SHARE * 100.0).round(),
        plan.budget_per_minute,
        (f64::from(plan.budget_per_minute) * budget::PLANNED_SHARE).floor(),
        if fixes.is_empty() {
            "poll fewer queues (GENESYS_QUEUES)".to_string()
        } else {
            fixes.join("; or ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults: `POLL_INTERVAL=10s WINDOW=60s`, 300 requests per minute,
    /// `QUEUE_REFRESH=5m`, KPIs on with `KPI_POLL=60s`.
    pub(crate) const DEFAULTS: BudgetSettings = BudgetSettings {
        poll_interval: Duration::from_secs(10),
        window: Duration::from_secs(60),
        requests_per_minute: 300,
        queue_refresh: Duration::from_secs(300),
        kpi_poll: Some(Duration::from_secs(60)),
    };

    /// One row of the scaling table of README.md and docs/scaling.md, from the planner.
    fn scaling_row(queues: usize) -> String {
        use super::budget::thousands;
        let org = Org::whole(queues);
        let plan = plan_for(org, &DEFAULTS);
        let without_kpis = BudgetSettings {
            kpi_poll: None,
            ..DEFAULTS
        };
        let off = plan_for(org, &without_kpis);
        let refresh = budget::requests_per_minute(queues, DEFAULTS.queue_refresh);
        let kpis = plan.reserved_per_minute - refresh;
        let interval = |plan: &PollPlan| {
            let s = plan.poll_interval.as_secs();
            if plan.over_budget {
                format!("**{s} s, over budget**")
            } else {
                format!("{s} s")
            }
        };
        let verdict = if plan.over_budget {
            let mut fixes = Vec::new();
            if let Some(n) = shards_needed(org, &DEFAULTS) {
                fixes.push(format!("{n} shards"));
            }
            if let Some(budget) = budget_needed(org, &DEFAULTS) {
                fixes.push(format!("`GENESYS_REQUESTS_PER_MINUTE={budget}`"));
            }
            if !off.over_budget {
                fixes.push("`KPIS=off`".into());
            }
            format!("WARN, fix: {}", fixes.join(" or "))
        } else {
            "fits".into()
        };
        format!(
            "| {} | {} | {} | {} + {refresh} + {kpis} = {} | {} | {verdict} |",
            thousands(queues as u64),
            plan.chunks,
            interval(&plan),
            plan.requests_per_minute.ceil(),
            plan.requests_per_minute.ceil() as u32 + plan.reserved_per_minute,
            interval(&off),
        )
    }

    /// The queue counts of the scaling table.
    const SCALING_ROWS: [usize; 9] = [
        1_000, 3_000, 4_000, 5_000, 10_000, 15_000, 20_000, 30_000, 50_000,
    ];

    /// The scaling tables of the README and docs/scaling.md are what the planner does:
    /// each of their rows is computed here, so they cannot drift from the code.
    #[test]
    fn the_scaling_tables_of_the_docs_are_the_planners() {
        let rows: Vec<String> = SCALING_ROWS.iter().map(|&q| scaling_row(q)).collect();
        for doc in ["README.md", "docs/scaling.md"] {
            let text =
                std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let table: Vec<&str> = text
                .lines()
                .skip_while(|l| !l.contains("<!-- scaling table"))
                .skip(3)
                .take_while(|l| l.starts_with('|'))
                .collect();
            assert_eq!(
                table, rows,
                "{doc}: the scaling table differs from the planner"
            );
        }
    }

    #[test]
    fn kpis_are_reserved_at_the_rate_they_are_really_polled() {
        // 20,000 queues: KPI_POLL=60s would be 200/min; widened to 4 min it is 50/min.
        assert_eq!(
            reserved_per_minute(Org::whole(20_000), &DEFAULTS, 300),
            40 + 50
        );
        assert_eq!(
            reserved_per_minute(Org::whole(1_000), &DEFAULTS, 300),
            2 + 10
        );
    }

    #[test]
    fn ten_thousand_queues_fit_every_minute_with_kpis_and_every_thirty_seconds_without() {
        // 30 s: 200/min + 20/min refresh + 50/min KPIs (widened to 2 min) > 240/min.
        let plan = plan_for(Org::whole(10_000), &DEFAULTS);
        assert_eq!(plan.poll_interval, Duration::from_secs(60));
        assert!(!plan.over_budget && plan.advice.is_none());
        let without_kpis = BudgetSettings {
            kpi_poll: None,
            ..DEFAULTS
        };
        let plan = plan_for(Org::whole(10_000), &without_kpis);
        assert_eq!(plan.poll_interval, Duration::from_secs(30));
    }

    #[test]
    fn twenty_thousand_queues_poll_once_per_window_and_name_the_fixes() {
        let plan = plan_for(Org::whole(20_000), &DEFAULTS);
        assert_eq!(plan.poll_interval, Duration::from_secs(60));
        assert!(plan.over_budget);
        let advice = plan.advice.unwrap();
        assert!(
            advice.starts_with("the request budget is too small for 20000 queues: even once per 60s window they need 200/min, plus 90/min for the queue refresh and KPIs, over 80% of GENESYS_REQUESTS_PER_MINUTE=300 (240/min)"),
            "{advice}"
        );
        assert!(
            advice.contains(
                "run 2 instances with QUEUE_SHARD=1/2 and 2/2, each with its own OAuth client"
            ),
            "{advice}"
        );
        assert!(
            advice.contains("set GENESYS_REQUESTS_PER_MINUTE=384 if"),
            "{advice}"
        );
        assert!(advice.ends_with("; or set KPIS=off"), "{advice}");
    }

    #[test]
    fn more_than_the_whole_budget_says_queues_will_miss_windows() {
        let plan = plan_for(Org::whole(50_000), &DEFAULTS);
        let advice = plan.advice.unwrap();
        assert!(advice.contains("some queues will miss windows"), "{advice}");
        // Every instance lists all 50,000 queues every 5 minutes: 100/min each.
        assert!(
            advice.contains("run 6 instances with QUEUE_SHARD=1/6 … 6/6"),
            "{advice}"
        );
        assert!(!advice.contains("KPIS=off"), "{advice}");
    }

    #[test]
    fn a_shard_is_advised_for_the_whole_selection() {
        // Already one of two shards of 40,000 queues, each listing all 40,000: four needed.
        let org = Org {
            polled: 20_000,
            selected: 40_000,
            listed: 40_000,
        };
        let advice = plan_for(org, &DEFAULTS).advice.unwrap();
        assert!(
            advice.contains("QUEUE_SHARD=1/4, 2/4, 3/4 and 4/4"),
            "{advice}"
        );
    }
}
