//! The padding term of the hours: a train node without packing computes its micro-batches padded
//! to their longest row, as the data profile's length histogram implies; with `packing = true`
//! nothing is padded, and the estimate says how much that saves.

use tunec_compiler::estimate::NodeEstimate;
use tunec_compiler::{check, render, World};

/// The profile of `tests/fit/two_buckets.profile.json` for every chat node.
struct Profiled;

impl World for Profiled {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        Err(format!("no file {dir}/{file}"))
    }

    fn profile(&self, _pipeline: &str, _node: &str) -> Option<String> {
        Some(std::fs::read_to_string("tests/fit/two_buckets.profile.json").expect("profile"))
    }
}

fn estimate(batch: u64, packing: bool) -> NodeEstimate {
    let text = std::fs::read_to_string("tests/fit/lora_8b_on_l40s.tune")
        .expect("fixture")
        .replace("per_device_batch = 4", &format!("per_device_batch = {batch}\n    packing          = {packing}"));
    let checked = check("padding.tune", &text, &[], &Profiled);
    checked.estimates.as_ref().and_then(|e| e.node("sft")).cloned().expect("an estimate")
}

// The profile holds half its rows in (32, 64] tokens and half in (64, 128], the longest 128. Taking
// lengths as even within a bucket, a micro-batch of 2 pads to a mean longest row of 88 tokens for a
// mean row of 72 (derived in compiler/src/estimate/padding.rs): 11/9 token positions per token.
#[test]
fn without_packing_the_hours_count_the_padding_the_profile_implies() {
    let padded = estimate(2, false);
    let factor = padded.padding_factor.expect("a padding factor");
    assert!((factor - 11.0 / 9.0).abs() < 1e-12, "{factor}");
    let packed = estimate(2, true);
    assert_eq!(packed.padding_factor, None, "packing flattens the micro-batch: no padding");
    assert_eq!(packed.packing_saves, None);
    assert_eq!(packed.tokens, padded.tokens, "the same real tokens either way");
    // What packing saves is the difference of the two estimates, in hours and dollars.
    let (hours, usd) = padded.packing_saves.expect("a saving");
    let (with, without) = (padded.hours.expect("hours"), packed.hours.expect("hours"));
    assert!(hours > 0.0 && (with - without - hours).abs() < 1e-12, "{with} - {without} vs {hours}");
    let usd = usd.expect("a priced instance");
    assert!((padded.usd.expect("usd") - packed.usd.expect("usd") - usd).abs() < 1e-9);
    // A batch of one is never padded, and costs what the packed batch of two does.
    let single = estimate(1, false);
    assert_eq!(single.padding_factor, Some(1.0));
    assert!((single.hours.expect("hours") - without).abs() < 1e-12);
    let lines = render::estimate_lines(&padded);
    let line = lines.iter().find(|l| l.starts_with("padding: ")).expect("a padding line");
    assert_eq!(
        line,
        &format!(
            "padding: micro-batches padded to their longest row compute 1.22x the tokens; `packing = true` would save {hours:.2} h, ${usd:.2}"
        )
    );
}
