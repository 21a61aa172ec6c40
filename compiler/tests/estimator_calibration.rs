//! The estimator against published peak-memory measurements.
//!
//! Every published peak-memory measurement (docs/estimator.md §6, sources in docs/sources.md) that
//! the model can express (an HF transformers + PEFT + bitsandbytes run whose configuration is
//! published) is estimated with the same code `tunec check` uses, and compared with the measurement. docs/estimator.md shows the
//! table this test prints and states the tolerance it enforces: ±20 % for every point but the
//! multi-GPU FSDP points the model underestimates (the Llama-2-70B ones measured with nvidia-smi,
//! gpt-oss full fine-tuning under FSDP2), whose wider bounds are documented as a known limitation.
//! The model itself has no per-point case. A run that used something the model has no term for
//! (cut cross-entropy, activation offloading) is compared with those terms taken out of the
//! estimate, and says so. Points the model cannot express at all (torchtune's chunked loss and
//! compiled kernels, DeepSpeed specifics, Unsloth's kernels) are listed there with the reason.

use tunec_compiler::catalog::{Catalog, ModelFacts};
use tunec_compiler::estimate::memory::{
    train_memory, Attention, Fsdp, Method, Quant, Sharding, TrainSetup, ALLOCATOR_SLACK_PERCENT, GIB,
};

fn llama2(params_b: &str) -> ModelFacts {
    // Llama 2 is not in the catalog (tunec targets current models); its shape is public:
    // 7B h=4096 i=11008 L=32 MHA; 70B h=8192 i=28672 L=80 GQA 8; vocab 32000, untied.
    let base = Catalog::builtin().model("meta-llama/Llama-3.1-8B-Instruct").expect("catalog").clone();
    let (h, i, l, heads, kv) = match params_b {
        "7b" => (4096, 11008, 32, 32, 32),
        _ => (8192, 28672, 80, 64, 8),
    };
    let v = 32_000;
    let d = h / heads;
    let layer = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * i + 2 * h;
    ModelFacts {
        id: format!("meta-llama/Llama-2-{params_b}-hf"),
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
    what: &'static str,
    measured_gib: f64,
    metric: &'static str,
    /// Allowed relative error of the estimate, (low, high): estimate/measured - 1.
    tolerance: (f64, f64),
    setup: TrainSetup<'static>,
    /// Terms the measured run did not have (a fused loss, offloaded activations), taken out of the
    /// estimate before comparing; the allocator slack is recomputed on what remains.
    without: &'static [&'static str],
}

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
    }
}

/// The estimated peak, less the `without` terms.
fn estimate(p: &Point) -> f64 {
    let mem = train_memory(&p.setup);
    if p.without.is_empty() {
        return mem.gpu_peak as f64 / GIB as f64;
    }
    let kept: u64 = mem
        .gpu_terms
        .iter()
        .filter(|t| t.name != "allocator slack" && !p.without.contains(&t.name))
        .map(|t| t.bytes)
        .sum();
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
    let full_shard = |offload| Some(Fsdp { sharding: Sharding::FullShard, offload, use_orig_params: false });
    let mut out = Vec::new();
    // #20: LLaMA-Factory, Llama-2-7B QLoRA r=8 all modules, HF + FA2, bs 1, A100 40GB.
    for (ctx, gb) in [(1024, 6.0), (2048, 7.0), (4096, 9.0), (8192, 12.0), (16384, 19.0), (32768, 32.0)] {
        out.push(Point {
            id: "#20",
            what: Box::leak(format!("Llama-2-7B QLoRA r8, 1xA100, {ctx}x1").into_boxed_str()),
            measured_gib: gb * 1e9 / GIB as f64,
            metric: "GB, tool not stated",
            tolerance: (-0.20, 0.20),
            setup: setup(l7, Method::Qlora, 8, ctx, 1, 1, None),
            without: &[],
        });
    }
    // #21: LLaMA-Factory, Llama-2-7B r=8 all, bs 4, max len 1024.
    out.push(Point {
        id: "#21",
        what: "Llama-2-7B LoRA r8, 1 GPU, 1024x4",
        measured_gib: 18.0e9 / GIB as f64,
        metric: "GB, tool not stated",
        tolerance: (-0.20, 0.20),
        setup: setup(l7, Method::Lora, 8, 1024, 4, 1, None),
        without: &[],
    });
    out.push(Point {
        id: "#21",
        what: "Llama-2-7B QLoRA r8, 1 GPU, 1024x4",
        measured_gib: 9.0e9 / GIB as f64,
        metric: "GB, tool not stated",
        tolerance: (-0.20, 0.20),
        setup: setup(l7, Method::Qlora, 8, 1024, 4, 1, None),
        without: &[],
    });
    // #14: HF PEFT FSDP QLoRA, Llama-2-70B r=8 all-linear, 2 GPUs, 2048 packed x 2, GC, FA2.
    out.push(Point {
        id: "#14",
        what: "Llama-2-70B QLoRA FSDP, 2 GPUs, 2048x2",
        measured_gib: 35.6e9 / GIB as f64,
        metric: "GB, nvidia-smi (PEFT docs)",
        tolerance: (-0.20, 0.20),
        setup: setup(l70, Method::Qlora, 8, 2048, 2, 2, full_shard(false)),
        without: &[],
    });
    out.push(Point {
        id: "#14",
        what: "Llama-2-70B QLoRA FSDP + offload, 2 GPUs, 2048x2",
        measured_gib: 19.6e9 / GIB as f64,
        metric: "GB, nvidia-smi (PEFT docs)",
        tolerance: (-0.50, 0.20),
        setup: setup(l70, Method::Qlora, 8, 2048, 2, 2, full_shard(true)),
        without: &[],
    });
    // #15: HF PEFT FSDP LoRA bf16, Llama-2-70B r=8, 8xH100, 2048 packed x 8.
    out.push(Point {
        id: "#15",
        what: "Llama-2-70B LoRA FSDP, 8xH100, 2048x8",
        measured_gib: 76.0e9 / GIB as f64,
        metric: "GB, nvidia-smi 72-80 (PEFT docs)",
        tolerance: (-0.30, 0.20),
        setup: setup(l70, Method::Lora, 8, 2048, 8, 8, full_shard(false)),
        without: &[],
    });
    // #10: Answer.AI fsdp_qlora (HF model and loss), Llama-2-7B, 2x3090, 2048, GC.
    for (method, batch, gib) in
        [(Method::Lora, 4, 16.14), (Method::Lora, 6, 21.35), (Method::Qlora, 4, 11.22), (Method::Qlora, 10, 20.97)]
    {
        out.push(Point {
            id: "#10",
            what: Box::leak(format!("Llama-2-7B {method:?} FSDP, 2x3090, 2048x{batch}").into_boxed_str()),
            measured_gib: gib,
            metric: "GiB, max reserved (Answer.AI)",
            tolerance: (-0.20, 0.20),
            setup: setup(l7, method, 64, 2048, batch, 2, full_shard(false)),
            without: &[],
        });
    }
    // ms-swift's Qwen3 best practice: Qwen3-8B LoRA r8 all-linear (dropout 0.05, its default),
    // max length 2048, batch 1, one GPU, "GPU Memory Usage: 22GB".
    let mut qwen3 = setup(catalog("Qwen/Qwen3-8B"), Method::Lora, 8, 2048, 1, 1, None);
    qwen3.lora_dropout = true;
    out.push(Point {
        id: "Q3",
        what: "Qwen3-8B LoRA r8, 1 GPU, 2048x1",
        measured_gib: 22.0e9 / GIB as f64,
        metric: "GB, tool not stated (ms-swift docs)",
        tolerance: (-0.20, 0.20),
        setup: qwen3,
        without: &[],
    });
    // Axolotl's gpt-oss-20b examples: the MXFP4 checkpoint dequantized to bf16, sequences of 4096
    // packed, micro-batch 1, gradient checkpointing, flash attention 3, "device_mem_reserved(gib)"
    // from the logs. Every run used cut cross-entropy (no logits tensor) and activation offloading
    // (no stored activations), which the model has no term for, so those two terms are taken out.
    const CCE_OFFLOAD: &[&str] = &["logits + cross-entropy", "activations"];
    let oss20 = catalog("openai/gpt-oss-20b");
    let mut lora = setup(oss20, Method::Lora, 8, 4096, 1, 1, None);
    lora.optimizer = "adamw_torch_8bit".into();
    out.push(Point {
        id: "OSS",
        what: "gpt-oss-20b LoRA r8 (attention), 1x48 GB, 4096x1",
        measured_gib: 44.0,
        metric: "GiB, reserved (Axolotl)",
        tolerance: (-0.20, 0.20),
        setup: lora,
        without: CCE_OFFLOAD,
    });
    for (gpus, gib) in [(8, 36.0), (4, 46.0)] {
        let mut full = setup(oss20, Method::Full, 0, 4096, 1, gpus, full_shard(false));
        full.optimizer = "adamw_torch_8bit".into();
        out.push(Point {
            id: "OSS",
            what: Box::leak(format!("gpt-oss-20b full FSDP, {gpus} GPUs, 4096x1").into_boxed_str()),
            measured_gib: gib,
            metric: "GiB, reserved (Axolotl)",
            tolerance: (-0.45, 0.20),
            setup: full,
            without: CCE_OFFLOAD,
        });
    }
    let mut big = setup(catalog("openai/gpt-oss-120b"), Method::Full, 0, 4096, 1, 8, full_shard(true));
    big.nodes = 2;
    big.optimizer = "adamw_torch_fused".into();
    out.push(Point {
        id: "OSS",
        what: "gpt-oss-120b full FSDP + offload, 2x8 GPUs, 4096x1",
        measured_gib: 49.0,
        metric: "GiB, reserved (Axolotl)",
        tolerance: (-0.70, 0.20),
        setup: big,
        without: CCE_OFFLOAD,
    });
    out
}

#[test]
fn estimates_stay_within_the_documented_tolerance() {
    let mut failures = Vec::new();
    println!("| point | configuration | measured | estimate | error |");
    println!("|---|---|---|---|---|");
    for p in points() {
        let est = estimate(&p);
        let err = est / p.measured_gib - 1.0;
        println!(
            "| {} | {} | {:.1} GiB ({}) | {:.1} GiB | {:+.0}% |",
            p.id,
            p.what,
            p.measured_gib,
            p.metric,
            est,
            err * 100.0
        );
        if err < p.tolerance.0 || err > p.tolerance.1 {
            failures.push(format!("{} {}: {:+.0}% outside {:?}", p.id, p.what, err * 100.0, p.tolerance));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
