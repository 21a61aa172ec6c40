//! The estimator against published peak-memory measurements.
//!
//! Every point of research/anchors-memory-cost.md §2 that the model can express (an HF
//! transformers + PEFT + bitsandbytes run whose configuration is published) is estimated with the
//! same code `tunec check` uses, and compared with the measurement. docs/estimator.md shows the
//! table this test prints and states the tolerance it enforces: ±20 % for every point but the
//! Llama-2-70B FSDP points measured with nvidia-smi, which the model underestimates and whose
//! wider bounds are documented as a known limitation. The model itself has no per-point case.
//! Points the model cannot express (torchtune's chunked loss and compiled kernels, MoE, DeepSpeed
//! specifics) are listed there with the reason.

use tunec_compiler::catalog::{Catalog, ModelFacts};
use tunec_compiler::estimate::memory::{train_memory, Attention, Fsdp, Method, Quant, Sharding, TrainSetup, GIB};

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
    });
    out.push(Point {
        id: "#21",
        what: "Llama-2-7B QLoRA r8, 1 GPU, 1024x4",
        measured_gib: 9.0e9 / GIB as f64,
        metric: "GB, tool not stated",
        tolerance: (-0.20, 0.20),
        setup: setup(l7, Method::Qlora, 8, 1024, 4, 1, None),
    });
    // #14: HF PEFT FSDP QLoRA, Llama-2-70B r=8 all-linear, 2 GPUs, 2048 packed x 2, GC, FA2.
    out.push(Point {
        id: "#14",
        what: "Llama-2-70B QLoRA FSDP, 2 GPUs, 2048x2",
        measured_gib: 35.6e9 / GIB as f64,
        metric: "GB, nvidia-smi (PEFT docs)",
        tolerance: (-0.20, 0.20),
        setup: setup(l70, Method::Qlora, 8, 2048, 2, 2, full_shard(false)),
    });
    out.push(Point {
        id: "#14",
        what: "Llama-2-70B QLoRA FSDP + offload, 2 GPUs, 2048x2",
        measured_gib: 19.6e9 / GIB as f64,
        metric: "GB, nvidia-smi (PEFT docs)",
        tolerance: (-0.50, 0.20),
        setup: setup(l70, Method::Qlora, 8, 2048, 2, 2, full_shard(true)),
    });
    // #15: HF PEFT FSDP LoRA bf16, Llama-2-70B r=8, 8xH100, 2048 packed x 8.
    out.push(Point {
        id: "#15",
        what: "Llama-2-70B LoRA FSDP, 8xH100, 2048x8",
        measured_gib: 76.0e9 / GIB as f64,
        metric: "GB, nvidia-smi 72-80 (PEFT docs)",
        tolerance: (-0.30, 0.20),
        setup: setup(l70, Method::Lora, 8, 2048, 8, 8, full_shard(false)),
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
        });
    }
    out
}

#[test]
fn estimates_stay_within_the_documented_tolerance() {
    let mut failures = Vec::new();
    println!("| point | configuration | measured | estimate | error |");
    println!("|---|---|---|---|---|");
    for p in points() {
        let est = train_memory(&p.setup).gpu_peak as f64 / GIB as f64;
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
