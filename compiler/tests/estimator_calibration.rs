//! The estimator against published peak-memory measurements.
//!
//! Every published peak-memory measurement (docs/estimator.md §6, sources in docs/sources.md) that
//! the model can express (an HF transformers + PEFT + bitsandbytes run, on one GPU or under
//! PyTorch FSDP, whose configuration is published) is estimated with the same code `tunec check`
//! uses, and compared with the measurement. docs/estimator.md shows the table this test prints,
//! with the median and largest |error|, and states the tolerance it enforces: ±20 % for every point
//! but the known failures, each of which carries the reason found for it (a metric, a published
//! pair of figures no per-parameter model fits, FSDP2). The test fails when a point leaves its
//! tolerance, when a wider tolerance has no reason, or when the median |error| exceeds 10 %. The
//! model itself has no per-point case. A run that used something the model has no term for (cut
//! cross-entropy, activation offloading) is compared with those terms taken out of the estimate,
//! and one that stored its frozen weights in fp32 with its weights counted twice; each says so.
//! Points the model cannot express at all (torchtune's chunked loss and compiled kernels,
//! DeepSpeed specifics, Unsloth's kernels) are listed in §7 with the reason.

use tunec_compiler::catalog::{Catalog, ModelFacts};
use tunec_compiler::estimate::memory::{
    train_memory, Attention, Fsdp, Method, Quant, Sharding, TrainSetup, ALLOCATOR_SLACK_PERCENT, GIB,
};

fn llama2(params_b: &str) -> ModelFacts {
    // Llama 2 is not in the catalog (tunec targets current models); its shape is public:
    // 7B h=4096 i=11008 L=32 MHA; 70B h=8192 i=28672 L=80 GQA 8; vocab 32000, untied.
    let (h, i, l, heads, kv) = match params_b {
        "7b" => (4096, 11008, 32, 32, 32),
        _ => (8192, 28672, 80, 64, 8),
    };
    llama_shape(&format!("meta-llama/Llama-2-{params_b}-hf"), h, i, l, heads, kv, 32_000)
}

/// A Llama-architecture model that is not in the catalog, from its published config.json sizes.
fn llama_shape(id: &str, h: u64, i: u64, l: u64, heads: u64, kv: u64, v: u64) -> ModelFacts {
    let base = Catalog::builtin().model("meta-llama/Llama-3.1-8B-Instruct").expect("catalog").clone();
    let d = h / heads;
    let layer = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * i + 2 * h;
    ModelFacts {
        id: id.to_owned(),
        hidden_size: h,
        intermediate_size: i,
        num_layers: l,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: d,
        vocab_size: v,
        max_position_embeddings: 4096,
        params: 2 * v * h + l * layer + h,
        ..base
    }
}

struct Point {
    id: &'static str,
    what: String,
    measured_gib: f64,
    metric: &'static str,
    /// Allowed relative error of the estimate, (low, high): estimate/measured - 1. ±20 % unless
    /// the point is a known failure, whose `reason` says why.
    tolerance: (f64, f64),
    setup: TrainSetup<'static>,
    /// Terms the measured run did not have (a fused loss, offloaded activations), taken out of the
    /// estimate before comparing; the allocator slack is recomputed on what remains.
    without: &'static [&'static str],
    /// The run loaded the frozen weights in fp32 (PEFT's example script does so without
    /// quantization) and FSDP gathered them in bf16: the sharded `weights` term counts twice.
    fp32_weights: bool,
    /// Why a point outside ±20 % is outside (investigated); empty for the others.
    reason: &'static str,
}

fn point(id: &'static str, what: String, measured_gib: f64, metric: &'static str, setup: TrainSetup<'static>) -> Point {
    Point {
        id,
        what,
        measured_gib,
        metric,
        tolerance: (-0.20, 0.20),
        setup,
        without: &[],
        fp32_weights: false,
        reason: "",
    }
}

const GB: f64 = 1e9 / GIB as f64;

fn setup(
    model: &'static ModelFacts,
    method: Method,
    r: u64,
    seq: u64,
    batch: u64,
    gpus: u64,
    fsdp: Option<Fsdp>,
) -> TrainSetup<'static> {
    TrainSetup {
        model,
        method,
        quant: if method == Method::Qlora { Quant::FourBit { double_quant: true } } else { Quant::None },
        lora_r: r,
        targets: None,
        lora_dropout: false,
        modules_to_save: Vec::new(),
        dtype_bytes: 2,
        fsdp,
        gpus_per_node: gpus,
        nodes: 1,
        micro_batch: batch,
        seq_len: seq,
        gradient_checkpointing: true,
        attention: Attention::Fused,
        optimizer: "adamw_torch".into(),
        cpu_ram_efficient_loading: true,
        // LLaMA-Factory prepares a quantized model with its own prepare_model_for_training, which
        // leaves the 16-bit parameters as loaded (upcast_layernorm is off by default); the FSDP
        // runs never upcast.
        kbit_prepare: false,
    }
}

/// The estimated peak, less the `without` terms, plus the `weights` term once more where the run
/// kept its frozen weights in fp32; the allocator slack is recomputed on the result.
fn estimate(p: &Point) -> f64 {
    let mem = train_memory(&p.setup);
    if p.without.is_empty() && !p.fp32_weights {
        return mem.gpu_peak as f64 / GIB as f64;
    }
    let mut kept: u64 = mem
        .gpu_terms
        .iter()
        .filter(|t| t.name != "allocator slack" && !p.without.contains(&t.name))
        .map(|t| t.bytes)
        .sum();
    if p.fp32_weights {
        kept += mem.gpu_terms.iter().filter(|t| t.name == "weights").map(|t| t.bytes).sum::<u64>();
    }
    (kept + kept * ALLOCATOR_SLACK_PERCENT / 100) as f64 / GIB as f64
}

fn catalog(id: &str) -> &'static ModelFacts {
    Catalog::builtin().model(id).expect("in the catalog")
}

fn leak(m: ModelFacts) -> &'static ModelFacts {
    Box::leak(Box::new(m))
}

fn points() -> Vec<Point> {
    let l7 = leak(llama2("7b"));
    let l70 = leak(llama2("70b"));
    // Yi-34B (01-ai/Yi-34B config.json): h 7168, i 20480, 60 layers, 56 heads, 8 KV heads, vocab 64000.
    let yi = leak(llama_shape("01-ai/Yi-34B", 7168, 20480, 60, 56, 8, 64_000));
    // Mistral-7B-v0.2 base (mistral-community/Mistral-7B-v0.2 config.json): h 4096, i 14336, 32
    // layers, 32 heads, 8 KV heads, vocab 32000, no sliding window.
    let mistral = leak(llama_shape("mistralai/Mistral-7B-v0.2", 4096, 14336, 32, 32, 8, 32_000));
    let full_shard = |offload| Some(Fsdp { sharding: Sharding::FullShard, offload, use_orig_params: false });
    let mut out = Vec::new();
    // #20: LLaMA-Factory, Llama-2-7B QLoRA r=8 all modules, HF + FA2, bs 1, A100 40GB.
    for (ctx, gb) in [(1024, 6.0), (2048, 7.0), (4096, 9.0), (8192, 12.0), (16384, 19.0), (32768, 32.0)] {
        out.push(point(
            "#20",
            format!("Llama-2-7B QLoRA r8, 1xA100, {ctx}x1"),
            gb * GB,
            "GB, tool not stated",
            setup(l7, Method::Qlora, 8, ctx, 1, 1, None),
        ));
    }
    // #21: LLaMA-Factory, Llama-2-7B r=8 all, bs 4, max len 1024.
    out.push(point(
        "#21",
        "Llama-2-7B LoRA r8, 1 GPU, 1024x4".into(),
        18.0 * GB,
        "GB, tool not stated",
        setup(l7, Method::Lora, 8, 1024, 4, 1, None),
    ));
    out.push(point(
        "#21",
        "Llama-2-7B QLoRA r8, 1 GPU, 1024x4".into(),
        9.0 * GB,
        "GB, tool not stated",
        setup(l7, Method::Qlora, 8, 1024, 4, 1, None),
    ));
    // #14: HF PEFT FSDP QLoRA, Llama-2-70B r=8 all-linear, 2 GPUs, 2048 packed x 2, GC, FA2.
    out.push(point(
        "#14",
        "Llama-2-70B QLoRA FSDP, 2 GPUs, 2048x2".into(),
        35.6 * GB,
        "GB, nvidia-smi (PEFT docs)",
        setup(l70, Method::Qlora, 8, 2048, 2, 2, full_shard(false)),
    ));
    out.push(Point {
        tolerance: (-0.35, 0.20),
        reason: "the metric: nvidia-smi shows the whole process (CUDA context, NCCL, cuBLAS workspaces, \
                 everything the caching allocator holds); Answer.AI's run of the same model, batch and \
                 offload (AAI, r 64), read as max_memory_reserved, is 3.4 GiB lower, at 14.9 GiB, \
                 and the estimate is 15 % below that",
        ..point(
            "#14",
            "Llama-2-70B QLoRA FSDP + offload, 2 GPUs, 2048x2".into(),
            19.6 * GB,
            "GB, nvidia-smi (PEFT docs)",
            setup(l70, Method::Qlora, 8, 2048, 2, 2, full_shard(true)),
        )
    });
    // #15: HF PEFT FSDP LoRA bf16, Llama-2-70B r=8, 8xH100, 2048 packed x 8. PEFT's example
    // script loads an unquantized model in fp32 (examples/sft/utils.py: torch_dtype float32
    // unless a quant storage dtype is set), and FSDP's bf16 mixed precision gathers in bf16.
    out.push(Point {
        fp32_weights: true,
        ..point(
            "#15",
            "Llama-2-70B LoRA FSDP (fp32 weights), 8xH100, 2048x8".into(),
            76.0 * GB,
            "GB, nvidia-smi 72-80 (PEFT docs)",
            setup(l70, Method::Lora, 8, 2048, 8, 8, full_shard(false)),
        )
    });
    // #10: Answer.AI fsdp_qlora (HF model and loss), Llama-2-7B, 2x3090, 2048, GC, r 64.
    for (method, batch, gib) in
        [(Method::Lora, 4, 16.14), (Method::Lora, 6, 21.35), (Method::Qlora, 4, 11.22), (Method::Qlora, 10, 20.97)]
    {
        out.push(point(
            "#10",
            format!("Llama-2-7B {method:?} FSDP, 2x3090, 2048x{batch}"),
            gib,
            "GiB, max reserved (Answer.AI)",
            setup(l7, method, 64, 2048, batch, 2, full_shard(false)),
        ));
    }
    // AAI: the other runs of the same benchmark note (r 64, all linear layers, 2048 unless said):
    // fsdp_qlora's "ddp" strategy (FSDP NO_SHARD: every GPU holds the whole model), CPU offload,
    // Yi-34B, Llama-2-70B and Mistral-7B-v0.2 at 24k tokens.
    for (method, batch, gib) in [(Method::Qlora, 8, 20.94), (Method::Lora, 4, 22.04)] {
        out.push(point(
            "AAI",
            format!("Llama-2-7B {method:?} NO_SHARD, 2x3090, 2048x{batch}"),
            gib,
            "GiB, max reserved (Answer.AI)",
            setup(l7, method, 64, 2048, batch, 2, None),
        ));
    }
    for (method, batch, gib) in [(Method::Lora, 10, 22.69), (Method::Qlora, 12, 22.38)] {
        out.push(point(
            "AAI",
            format!("Llama-2-7B {method:?} FSDP + offload, 2x4090, 2048x{batch}"),
            gib,
            "GiB, max reserved (Answer.AI)",
            setup(l7, method, 64, 2048, batch, 2, full_shard(true)),
        ));
    }
    for (offload, batch, gib) in [(false, 2, 23.05), (true, 4, 22.98)] {
        let what = if offload { "FSDP + offload" } else { "FSDP" };
        out.push(point(
            "AAI",
            format!("Yi-34B QLoRA {what}, 2x3090, 2048x{batch}"),
            gib,
            "GiB, max reserved (Answer.AI)",
            setup(yi, Method::Qlora, 64, 2048, batch, 2, full_shard(offload)),
        ));
    }
    out.push(point(
        "AAI",
        "Llama-2-70B QLoRA FSDP + offload, 2x3090, 2048x2".into(),
        14.92,
        "GiB, max reserved (Answer.AI)",
        setup(l70, Method::Qlora, 64, 2048, 2, 2, full_shard(true)),
    ));
    for (ctx, batch) in [(2048, 12), (24576, 1)] {
        out.push(point(
            "AAI",
            format!("Mistral-7B-v0.2 QLoRA FSDP + offload, 2x4090, {ctx}x{batch}"),
            22.54,
            "GiB, max reserved (Answer.AI)",
            setup(mistral, Method::Qlora, 64, ctx, batch, 2, full_shard(true)),
        ));
    }
    // PS: Phil Schmid's Llama 3 70B FSDP + QLoRA notebook: r 16 all-linear, dropout 0.05, SDPA,
    // packed 3072 x 1, FSDP full_shard auto_wrap offload on 4 x 24 GB: "22 GB/GPU".
    let mut ps = setup(catalog("meta-llama/Llama-3.1-70B-Instruct"), Method::Qlora, 16, 3072, 1, 4, full_shard(true));
    ps.lora_dropout = true;
    out.push(point(
        "PS",
        "Llama-3-70B QLoRA FSDP + offload, 4x24 GB, 3072x1".into(),
        22.0 * GB,
        "GB, tool not stated",
        ps,
    ));
    // ms-swift's Qwen3 best practice: Qwen3-8B LoRA r8 all-linear (dropout 0.05, its default),
    // max length 2048, batch 1, one GPU, "GPU Memory Usage: 22GB".
    let mut qwen3 = setup(catalog("Qwen/Qwen3-8B"), Method::Lora, 8, 2048, 1, 1, None);
    qwen3.lora_dropout = true;
    out.push(point(
        "Q3",
        "Qwen3-8B LoRA r8, 1 GPU, 2048x1".into(),
        22.0 * GB,
        "GB, tool not stated (ms-swift docs)",
        qwen3,
    ));
    // Axolotl's gpt-oss-20b examples: the MXFP4 checkpoint dequantized to bf16, sequences of 4096
    // packed, micro-batch 1, gradient checkpointing, flash attention 3, "device_mem_reserved(gib)"
    // from the logs. Every run used cut cross-entropy (no logits tensor) and activation offloading
    // (no stored activations), which the model has no term for, so those two terms are taken out.
    const CCE_OFFLOAD: &[&str] = &["logits + cross-entropy", "cached layer buffers", "activations"];
    let oss20 = catalog("openai/gpt-oss-20b");
    let mut lora = setup(oss20, Method::Lora, 8, 4096, 1, 1, None);
    lora.optimizer = "adamw_torch_8bit".into();
    out.push(Point {
        without: CCE_OFFLOAD,
        ..point("OSS", "gpt-oss-20b LoRA r8 (attention), 1x48 GB, 4096x1".into(), 44.0, "GiB, reserved (Axolotl)", lora)
    });
    for (gpus, gib) in [(8, 36.0), (4, 46.0)] {
        let mut full = setup(oss20, Method::Full, 0, 4096, 1, gpus, full_shard(false));
        full.optimizer = "adamw_torch_8bit".into();
        let mut p = Point {
            without: CCE_OFFLOAD,
            ..point("OSS", format!("gpt-oss-20b full FSDP2, {gpus} GPUs, 4096x1"), gib, "GiB, reserved (Axolotl)", full)
        };
        if gpus == 4 {
            p.tolerance = (-0.20, 0.45);
            p.reason = "the same configuration on 8 GPUs reads 36 GiB: halving the shards adds 10 GiB, \
                        4.1 B per parameter, less than any full fine-tuning with 8-bit AdamW holds \
                        (2 B weights + 2 B gradients + 2 B state; accelerate keeps fp32 weights and \
                        gradients under FSDP2, 10 B), so the two README figures do not describe the \
                        same per-parameter state";
        }
        out.push(p);
    }
    let mut big = setup(catalog("openai/gpt-oss-120b"), Method::Full, 0, 4096, 1, 8, full_shard(true));
    big.nodes = 2;
    big.optimizer = "adamw_torch_fused".into();
    out.push(Point {
        without: CCE_OFFLOAD,
        tolerance: (-0.55, 0.20),
        reason: "FSDP2, not the FSDP1 the model describes: it all-gathers into a flat buffer and copies out into \
                 per-parameter tensors, and copies each gradient into a reduce-scatter buffer, each buffer a whole \
                 decoder layer (3.2 B parameters, 6.4 GB in bf16, for gpt-oss-120b's 128-expert layers); tunec's \
                 jobs run FSDP1",
        ..point(
            "OSS",
            "gpt-oss-120b full FSDP2 + offload, 2x8 GPUs, 4096x1".into(),
            49.0,
            "GiB, reserved (Axolotl)",
            big,
        )
    });
    out
}

/// The median of |error| and its largest value.
fn summary(errors: &[f64]) -> (f64, f64) {
    let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let n = abs.len();
    let median = if n % 2 == 1 { abs[n / 2] } else { (abs[n / 2 - 1] + abs[n / 2]) / 2.0 };
    (median, abs[n - 1])
}

#[test]
fn estimates_stay_within_the_documented_tolerance() {
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    let mut known = Vec::new();
    println!("| point | configuration | measured | estimate | error |");
    println!("|---|---|---|---|---|");
    for p in points() {
        let est = estimate(&p);
        let err = est / p.measured_gib - 1.0;
        errors.push(err);
        println!(
            "| {} | {} | {:.1} GiB ({}) | {:.1} GiB | {:+.0}% |",
            p.id,
            p.what,
            p.measured_gib,
            p.metric,
            est,
            err * 100.0
        );
        let wide = p.tolerance.0 < -0.20 || p.tolerance.1 > 0.20;
        if wide && p.reason.is_empty() {
            failures.push(format!("{} {}: a tolerance wider than ±20 % needs its reason", p.id, p.what));
        }
        if err < p.tolerance.0 || err > p.tolerance.1 {
            failures.push(format!("{} {}: {:+.0}% outside {:?}", p.id, p.what, err * 100.0, p.tolerance));
        }
        if err.abs() > 0.20 {
            known.push(format!("{} {} ({:+.0}%): {}", p.id, p.what, err * 100.0, p.reason));
        }
    }
    let (median, max) = summary(&errors);
    println!();
    println!("{} points: median |error| {:.1}%, max |error| {:.1}%", errors.len(), median * 100.0, max * 100.0);
    for k in &known {
        println!("outside ±20 %: {k}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(median <= 0.10, "median |error| {:.1}% is above 10 %", median * 100.0);
}

/// Unsloth's Hugging Face + FA2 baselines (docs/estimator.md §7, UNSLOTH): the longest context
/// that fitted one 80 GB A100 at batch 1, QLoRA r 32 on all linear layers. They bound the peak
/// from above, so the model must not put them over the card when the run is expressed as the
/// calibration points are (no k-bit preparation); with train.py's k-bit preparation the test only
/// prints the figure, since whether the baseline prepared its model so is not published.
#[test]
fn published_context_bounds_fit_the_card() {
    let card = 80.0;
    for (id, ctx) in [("meta-llama/Llama-3.1-8B-Instruct", 28_000), ("meta-llama/Llama-3.1-70B-Instruct", 6_916)] {
        let mut s = setup(catalog(id), Method::Qlora, 32, ctx, 1, 1, None);
        let plain = train_memory(&s).gpu_peak as f64 / GIB as f64;
        s.kbit_prepare = true;
        let prepared = train_memory(&s).gpu_peak as f64 / GIB as f64;
        println!("{id} QLoRA r32, {ctx}x1 on 80 GB: {plain:.1} GiB, {prepared:.1} GiB with k-bit preparation");
        assert!(plain <= card, "{id} at {ctx} tokens fitted 80 GB, estimated {plain:.1} GiB");
    }
}
