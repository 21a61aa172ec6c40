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
//               + logits and cross-entropy 14 V                        = 1,795,584
//               + cached layer buffers 8i (LoRA on the MLP)            =   114,688
//               = 2,180,608 B   (a layer's recompute, 6h+4h+2(1024+1024) + 8h + 8i = 192,512 B per
//                                token, is smaller than the logits, so the logits are the transient)
//   peak(T tokens) = S + floor(0.10 S), S = F + T p   (10 % allocator slack)
//
// On the L40S (46,068 MiB = 48,305,799,168 B), the largest S with S + floor(0.10 S) <= capacity is
// 43,914,362,880, so T <= (43,914,362,880 - 17,518,043,136) / 2,180,608 = 12,105.03: 12,105 tokens.
//   - per_device_batch at seq_len 2048: floor(12,105 / 2048) = 5; peak(5 x 2048) = 43,832,215,961 B,
//     and 6 x 2048 gives 48,744,689,664 B, over.
//   - seq_len at per_device_batch 4: floor(12,105 / 4) = 3026; peak(4 x 3026) = 48,303,334,604 B, and
//     3027 gives 48,312,929,280 B, over.
//   - as declared, 4 x 2048: peak(8192) = 38,919,742,259 B.
// The host needs the bf16 checkpoint loaded once per process and 3 GiB: 2N + 3 GiB = 19,281,747,968 B.
#[test]
fn the_largest_batch_and_sequence_are_those_derived_by_hand() {
    let fit = search(&text(), "sft").expect("a search");
    assert_eq!(
        (fit.instance.as_str(), fit.gpu.as_str(), fit.capacity_bytes),
        ("ml.g6e.xlarge", "L40S", 48_305_799_168)
    );
    assert_eq!((fit.per_device_batch, fit.seq_len), (4, 2048));
    assert_eq!(fit.peak_bytes, 38_919_742_259);
    assert_eq!(fit.host_peak_bytes, 19_281_747_968);
    assert!(fit.fits());
    let batch = fit.max_batch.as_ref().expect("a batch fits");
    assert_eq!((batch.value, batch.peak_bytes), (5, 43_832_215_961));
    let seq = fit.max_seq_len.as_ref().expect("a sequence fits");
    assert_eq!((seq.value, seq.peak_bytes), (3026, 48_303_334_604));
}

// Three instances by hand (the same F and p; each GPU's memory from stdlib/catalog/instances.toml):
//   - ml.g5.2xlarge, one A10G of 23,028 MiB = 24,146,608,128 B: batch 4 needs 38,919,742,259 B,
//     batch 2 peak(4096) = 29,094,794,854 B and batch 1 peak(2048) = 24,182,321,152 B, all over (the
//     last by 35,713,024 B): it is not listed. (A smaller batch with more accumulation is what the
//     gpu_memory fixture's help proposes, tests/cases/gpu_memory.tune.)
//   - ml.g6e.xlarge, the node's own: batch 4 fits (above).
//   - ml.p4d.24xlarge, eight A100-40GB of 40,960 MiB = 42,949,672,960 B: more than one GPU adds the
//     NCCL buffers (400 MiB) under the slack: (F + 8192 p + 419,430,400) x 1.10 = 39,381,115,699 B:
//     batch 4 fits as declared.
//   - ml.g5.xlarge, one A10G but 16 GiB = 17,179,869,184 B of host RAM, below the 19,281,747,968 B the
//     host needs: it is not listed.
#[test]
fn instances_fit_at_the_batch_derived_by_hand_and_are_ranked_by_the_cost_of_the_job() {
    let fit = search(&text(), "sft").expect("a search");
    let on = |name: &str| fit.instances.iter().find(|i| i.instance == name);
    assert!(on("ml.g5.2xlarge").is_none(), "one sequence of 2048 needs more than an A10G holds");
    let own = on("ml.g6e.xlarge").expect("its own instance");
    assert!(own.declared && own.change().is_empty());
    assert_eq!((own.per_device_batch, own.grad_accum_factor, own.peak_bytes), (4, 1, 38_919_742_259));
    let p4d = on("ml.p4d.24xlarge").expect("eight A100s");
    assert_eq!((p4d.gpus, p4d.per_device_batch, p4d.peak_bytes), (8, 4, 39_381_115_699));
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
// (F + 4096 p) x 1.10 = 29,094,794,854 B, so no batch fits. The largest S with S + floor(0.10 S)
// <= 24,146,608,128 is 21,951,461,935, so the longest sequence at batch 1 is
// floor((21,951,461,935 - 17,518,043,136) / 2,180,608) = 2033 tokens.
#[test]
fn a_step_that_does_not_fit_has_no_batch_and_the_longest_sequence_derived_by_hand() {
    let text = text()
        .replace("\"ml.g6e.xlarge\" x 1", "\"ml.g5.2xlarge\" x 1")
        .replace("seq_len   = 2048", "seq_len   = 4096")
        .replace("per_device_batch = 4", "per_device_batch = 1");
    let fit = search(&text, "sft").expect("a search");
    assert!(!fit.fits());
    assert_eq!(fit.max_batch, None);
    assert_eq!(fit.max_seq_len.as_ref().map(|l| l.value), Some(2033));
    // The gpu_memory error's help proposes the same: the longest sequence, and the cheapest job.
    let checked = check(FIXTURE, &text, &[], &NoFiles);
    let error = checked.diagnostics.iter().find(|d| d.code == Code::GpuMemory).expect("gpu_memory");
    let help = error.help.as_deref().expect("a help");
    assert!(help.contains("`seq_len = 2033` or less"), "{help}");
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
