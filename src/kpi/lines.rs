//! The `genesys_queue_interval` line of one KPI bucket (CONTRACT.md's point, counts as
//! integers, sums as floats). Apart from the conversation-aggregates client, which only
//! speaks the Genesys side, so the API answer and the written point change independently.

use crate::genesys::conversation_aggregates::KpiBucket;
use crate::influx::line_protocol::LineBuilder;

/// The measurement of CONTRACT.md.
pub const MEASUREMENT: &str = "genesys_queue_interval";

/// Appends the `genesys_queue_interval` point of CONTRACT.md: tags `media_type`,
/// `queue_id`, `queue_name` and the static tags (sorted), counts as integers, sums as
/// floats, `service_level_target` only when known; timestamp = bucket start (s).
pub(crate) fn encode(
    bucket: &KpiBucket,
    out: &mut String,
    queue_name: &str,
    static_tags: &[(String, String)],
) {
    let mut tags: Vec<(&str, &str)> = vec![
        ("media_type", bucket.media_type.as_str()),
        ("queue_id", bucket.queue_id.as_str()),
        ("queue_name", queue_name),
    ];
    tags.extend(
        static_tags
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "media_type" | "queue_id" | "queue_name"))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    tags.sort_by_key(|(k, _)| *k);
    let line = tags
        .into_iter()
        .fold(LineBuilder::new(out, MEASUREMENT), |l, (k, v)| l.tag(k, v));
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut line = line
        .field_i64("offered", int(bucket.offered))
        .field_i64("answered", int(bucket.answered))
        .field_f64("answer_seconds_sum", bucket.answer_seconds_sum)
        .field_i64("abandoned", int(bucket.abandoned))
        .field_f64("abandon_seconds_sum", bucket.abandon_seconds_sum)
        .field_i64("short_abandoned", int(bucket.short_abandoned))
        .field_i64("flowed_out", int(bucket.flowed_out))
        .field_i64("handled", int(bucket.handled))
        .field_f64("handle_seconds_sum", bucket.handle_seconds_sum)
        .field_i64("waited", int(bucket.waited))
        .field_f64("wait_seconds_sum", bucket.wait_seconds_sum)
        .field_i64("transferred", int(bucket.transferred))
        .field_i64("over_sla", int(bucket.over_sla))
        .field_i64(
            "service_level_numerator",
            int(bucket.service_level_numerator),
        )
        .field_i64(
            "service_level_denominator",
            int(bucket.service_level_denominator),
        );
    if let Some(target) = bucket.service_level_target {
        line = line.field_f64("service_level_target", target);
    }
    line.finish(i64::try_from(bucket.bucket_start_ms / 1000).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::conversation_aggregates::tests::{
        find, fixture_response, SALES, SUPPORT, T1415, T1430,
    };

    #[test]
    fn encodes_the_contract_point() {
        let parsed = fixture_response();
        let mut out = String::new();
        let tags = [
            ("env".to_string(), "prod".to_string()),
            ("site".to_string(), "edge 1".to_string()),
        ];
        encode(
            find(&parsed, SALES, "voice", T1415),
            &mut out,
            "Sales, EMEA = \"Tier 1\"",
            &tags,
        );
        assert_eq!(
            out,
            "genesys_queue_interval,env=prod,media_type=voice,queue_id=a5b4e893-b5b4-4d27-a7de-d6d3b104b490,\
queue_name=Sales\\,\\ EMEA\\ \\=\\ \"Tier\\ 1\",site=edge\\ 1 \
offered=30i,answered=23i,answer_seconds_sum=899.924,abandoned=4i,abandon_seconds_sum=188.196,\
short_abandoned=1i,flowed_out=2i,handled=16i,handle_seconds_sum=4282.447,waited=29i,\
wait_seconds_sum=1329.271,transferred=0i,over_sla=14i,service_level_numerator=9i,\
service_level_denominator=27i,service_level_target=0.8 1748873700\n"
        );
        out.clear();
        encode(
            find(&parsed, SUPPORT, "voice", T1430),
            &mut out,
            "Support – Ünïcode",
            &[],
        );
        assert_eq!(
            out,
            "genesys_queue_interval,media_type=voice,queue_id=118fd762-9005-45cf-9fad-a87f37eacbc3,\
queue_name=Support\\ –\\ Ünïcode offered=0i,answered=0i,answer_seconds_sum=0,abandoned=0i,\
abandon_seconds_sum=0,short_abandoned=0i,flowed_out=0i,handled=2i,handle_seconds_sum=620.594,waited=0i,\
wait_seconds_sum=0,transferred=0i,over_sla=0i,service_level_numerator=0i,\
service_level_denominator=0i 1748874600\n"
        );
    }
}
