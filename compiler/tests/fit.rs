//! The fit search (`tunec check --fit NODE`) on fixtures whose answers are derived by hand from the
//! memory model of docs/estimator.md §2, and each instance's cost checked against the estimate of
//! the pipeline file with the proposed change written into it.

use tunec_compiler::catalog::Catalog;
use tunec_compiler::diagnostics::Code;
use tunec_compiler::driver::fit;
use tunec_compiler::estimate::fit::{Fit, FitError};
use tunec_compiler::{check, render, NoFiles};

const FIXTURE: &str = "tests/fit/lora_8b_on_l40s.tune";

fn text() -> String {
    std::fs::read_to_string(FIXTURE).expect("fixture")
}

fn search(text: &str, node: &str) -> Result<Fit, FitError> {
    let checked = check(FIXTURE, text, &[], &NoFiles);
    fit(checked.program.as_ref().expect("a program"), node, &NoFiles)
}

// The hand derivation, for LoRA r 16 (dropout 0) on Llama-3.1-8B-Instruct in bf16 on one GPU, with
// gradient checkpointing, SDPA and AdamW (the catalog row: N = 8,030,261,248 parameters, h = 4096,
// 32 layers, 8 KV heads of 128, i = 14,336, vocabulary V = 128,256):
//
//   fixed F = weights 2N                      = 16,060,522,496
//           + LoRA (41,943,040 params) x 16 B =    671,088,640  (fp32 weight, gradient, 2 AdamW states)
//           + CUDA context 750 MiB            =    786,432,000
//           = 17,518,043,136 B
//   per token p = checkpointed layer inputs 2hL + the head's input 2h  =   270,336
//               + logits and cross-entropy 12 V                        = 1,539,072
//               = 1,809,408 B   (a layer's recompute, 6h+4h+2(1024+1024) + 8h + 8i = 192,512 B per
//                                token, is smaller than the logits, so the logits are the transient)
//   peak(T tokens) = S + floor(0.12 S), S = F + T p   (12 % allocator slack)
//
// On the L40S (46,068 MiB = 48,305,799,168 B), the largest S with S + floor(0.12 S) <= capacity is
// 43,130,177,829, so T <= (43,130,177,829 - 17,518,043,136) / 1,809,408 = 14,154.9: 14,154 tokens.
//   - per_device_batch at seq_len 2048: floor(14,154 / 2048) = 6; peak(6 x 2048) = 44,522,294,476 B,
//     and 7 x 2048 gives 48,672,642,170 B, over.
//   - seq_len at per_device_batch 4: floor(14,154 / 4) = 3538; peak(4 x 3538) = 48,299,759,370 B, and
//     3539 gives 48,307,865,518 B, over.
//   - as declared, 4 x 2048: peak(8192) = 36,221,599,088 B.
// The host needs the bf16 checkpoint loaded once per process and 3 GiB: 2N + 3 GiB = 19,281,747,968 B.
#[test]
fn the_largest_batch_and_sequence_are_those_derived_by_hand() {
    let fit = search(&text(), "sft").expect("a search");
    assert_eq!(
        (fit.instance.as_str(), fit.gpu.as_str(), fit.capacity_bytes),
        ("ml.g6e.xlarge", "L40S", 48_305_799_168)
    );
    assert_eq!((fit.per_device_batch, fit.seq_len), (4, 2048));
    assert_eq!(fit.peak_bytes, 36_221_599_088);
    assert_eq!(fit.host_peak_bytes, 19_281_747_968);
    assert!(fit.fits());
    let batch = fit.max_batch.as_ref().expect("a batch fits");
    assert_eq!((batch.value, batch.peak_bytes), (6, 44_522_294_476));
    let seq = fit.max_seq_len.as_ref().expect("a sequence fits");
    assert_eq!((seq.value, seq.peak_bytes), (3538, 48_299_759_370));
}

// Three instances by hand (the same F and p; each GPU's memory from stdlib/catalog/instances.toml):
//   - ml.g5.2xlarge, one A10G of 23,028 MiB = 24,146,608,128 B, 32 GiB of host RAM: batch 4 needs
//     36,221,599,088 B and batch 2 peak(4096) = 27,920,903,700 B, both over; batch 1 peak(2048) =
//     23,770,556,006 B fits: per_device_batch 1 with 4x grad_accum.
//   - ml.g6e.xlarge, the node's own: batch 4 fits (above).
//   - ml.p4d.24xlarge, eight A100-40GB of 40,960 MiB = 42,949,672,960 B: more than one GPU adds the
//     NCCL buffers (400 MiB) under the slack: (F + 8192 p + 419,430,400) x 1.12 = 36,691,361,136 B:
//     batch 4 fits as declared.
//   - ml.g5.xlarge, one A10G but 16 GiB = 17,179,869,184 B of host RAM, below the 19,281,747,968 B the
//     host needs: it is not listed.
#[test]
fn instances_fit_at_the_batch_derived_by_hand_and_are_ranked_by_the_cost_of_the_job() {
    let fit = search(&text(), "sft").expect("a search");
    let on = |name: &str| fit.instances.iter().find(|i| i.instance == name);
    let a10g = on("ml.g5.2xlarge").expect("the A10G fits at a smaller batch");
    assert_eq!((a10g.per_device_batch, a10g.grad_accum_factor, a10g.peak_bytes), (1, 4, 23_770_556_006));
    assert_eq!(a10g.change(), "compute = \"ml.g5.2xlarge\" x 1, per_device_batch = 1 with 4x grad_accum");
    let own = on("ml.g6e.xlarge").expect("its own instance");
    assert!(own.declared && own.change().is_empty());
    assert_eq!((own.per_device_batch, own.grad_accum_factor, own.peak_bytes), (4, 1, 36_221_599_088));
    let p4d = on("ml.p4d.24xlarge").expect("eight A100s");
    assert_eq!((p4d.gpus, p4d.per_device_batch, p4d.peak_bytes), (8, 4, 36_691_361_136));
    assert_eq!(p4d.change(), "compute = \"ml.p4d.24xlarge\" x 1");
    assert!(on("ml.g5.xlarge").is_none(), "16 GiB of host RAM holds no 8B checkpoint in bf16");
    // Cheapest job first.
    let costs: Vec<f64> = fit.instances.iter().map(|i| i.usd.expect("a price")).collect();
    assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
}

/// The fixture with `change` applied: another instance, and a smaller batch with more accumulation.
fn changed(text: &str, instance: &str, batch: u64, factor: u64) -> String {
    let accum = if factor > 1 { format!("\n    grad_accum       = {factor}") } else { String::new() };
    text.replace("\"ml.g6e.xlarge\" x 1", &format!("\"{instance}\" x 1"))
        .replace("per_device_batch = 4", &format!("per_device_batch = {batch}{accum}"))
}

#[test]
fn each_instances_cost_is_the_estimate_of_the_file_with_its_change_written_in() {
    let text = text();
    let fit = search(&text, "sft").expect("a search");
    assert!(fit.instances.len() >= 3, "{:?}", fit.instances);
    for i in &fit.instances {
        let edited = changed(&text, &i.instance, i.per_device_batch, i.grad_accum_factor);
        let checked = check(FIXTURE, &edited, &[], &NoFiles);
        let estimate = checked.estimates.as_ref().and_then(|e| e.node("sft")).expect("an estimate");
        assert_eq!(estimate.gpu_peak_bytes, i.peak_bytes, "{}", i.instance);
        assert_eq!((estimate.hours, estimate.usd), (i.hours, i.usd), "{}", i.instance);
        assert!(!checked.diagnostics.iter().any(|d| d.code == Code::GpuMemory), "{}", i.instance);
    }
}

#[test]
fn the_search_reads_as_a_table() {
    let fit = search(&text(), "sft").expect("a search");
    insta::assert_snapshot!("fit_lora_8b_on_l40s", render::fit_lines(&fit).join("\n"));
    insta::assert_json_snapshot!("fit_lora_8b_on_l40s_json", render::fit_json(&fit));
}

// The same node on one A10G (23,028 MiB = 24,146,608,128 B) at seq_len 4096: a batch of 1 needs
// (F + 4096 p) x 1.12 = 27,920,903,700 B, so no batch fits. The largest S with S + floor(0.12 S)
// <= 24,146,608,128 is 21,559,471,543, so the longest sequence at batch 1 is
// floor((21,559,471,543 - 17,518,043,136) / 1,809,408) = 2233 tokens.
#[test]
fn a_step_that_does_not_fit_has_no_batch_and_the_longest_sequence_derived_by_hand() {
    let text = text()
        .replace("\"ml.g6e.xlarge\" x 1", "\"ml.g5.2xlarge\" x 1")
        .replace("seq_len   = 2048", "seq_len   = 4096")
        .replace("per_device_batch = 4", "per_device_batch = 1");
    let fit = search(&text, "sft").expect("a search");
    assert!(!fit.fits());
    assert_eq!(fit.max_batch, None);
    assert_eq!(fit.max_seq_len.as_ref().map(|l| l.value), Some(2233));
    // The gpu_memory error's help proposes the same: the longest sequence, and the cheapest job.
    let checked = check(FIXTURE, &text, &[], &NoFiles);
    let error = checked.diagnostics.iter().find(|d| d.code == Code::GpuMemory).expect("gpu_memory");
    let help = error.help.as_deref().expect("a help");
    assert!(help.contains("`seq_len = 2233` or less"), "{help}");
    let cheapest = fit.instances.iter().find(|i| !i.declared).expect("another instance");
    assert!(help.contains(&format!("`compute = \"{}\" x 1`", cheapest.instance)), "{help}");
    assert!(help.contains("`tunec check --fit sft`"), "{help}");
}

#[test]
fn only_a_train_node_with_an_instance_is_searched() {
    let text = text();
    let unknown = search(&text, "nope").expect_err("no such node");
    assert_eq!(unknown.to_string(), "there is no node `nope`; the train nodes are `sft`");
    let data = search(&text, "convo").expect_err("a chat node");
    assert!(data.to_string().starts_with("`convo` is a chat node"), "{data}");
    let local = text
        .replace("pipeline fit {", "pipeline fit {\n  target local")
        .replace("    compute          = \"ml.g6e.xlarge\" x 1\n", "");
    let none = search(&local, "sft").expect_err("no instance");
    assert!(matches!(none, FitError::NotEstimated { .. }), "{none:?}");
    assert!(Catalog::builtin().instance("ml.g6e.xlarge").is_some());
}
