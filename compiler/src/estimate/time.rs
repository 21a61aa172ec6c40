//! Tokens, FLOPs, wall time and dollars.
//!
//! Tokens come from the data profile the runtime writes for a chat node when one exists,
//! otherwise from declared rows (`rows`, or the bound of a `train[:N]` slice) times a declared
//! `mean_tokens`, otherwise a default of seq_len / 4; the source is reported with the figure. FLOPs
//! per trained token are LoRA/QLoRA 4N, 6N with gradient checkpointing (frozen weights get no
//! weight gradients, arXiv:2106.09685), full fine-tuning 6N, 8N (arXiv:2001.08361), plus causal
//! attention, 2·L·s·d_q per token forward, times 3 (4 with recompute) for forward and backward. Throughput is the GPUs' dense bf16 peak
//! times a utilisation per GPU type and method (stdlib/catalog/gpus.toml, overridable per node),
//! times 0.75 with FSDP CPU offload. Every job pays the SageMaker start-up and the model download.

/// Minutes a SageMaker training job spends before the script starts (provisioning, image pull).
pub const STARTUP_MINUTES: f64 = 8.0;
/// Bytes per second for downloading a model from the Hub or S3 onto the instance.
pub const DOWNLOAD_BYTES_PER_SEC: f64 = 250.0e6;
/// Bytes per second for writing a model to the instance's disk and uploading it.
pub const SAVE_BYTES_PER_SEC: f64 = 500.0e6;
/// Managed spot price as a fraction of on-demand (SageMaker advertises up to 90% savings; 65%
/// is taken as typical). Actual spot prices vary by region and hour.
pub const SPOT_FRACTION: f64 = 0.35;
/// Utilisation factor applied when FSDP offloads parameters and optimizer state to host RAM.
pub const OFFLOAD_FACTOR: f64 = 0.75;
/// Fraction of memory bandwidth a decode step reaches.
pub const DECODE_BANDWIDTH_FRACTION: f64 = 0.6;

/// Where a token count came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The runtime's data profile of the chat node.
    Profile,
    /// Declared rows and mean tokens.
    Declared,
    /// Declared rows and the default mean length (seq_len / 4).
    DefaultLength,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Profile => "data profile",
            TokenSource::Declared => "declared rows and mean_tokens",
            TokenSource::DefaultLength => "declared rows x default length (seq_len / 4)",
        }
    }
}

/// FLOPs per trained token for `params` parameters.
pub fn train_flops_per_token(params: u64, full: bool, checkpointing: bool, attention_per_token: f64) -> f64 {
    let k = match (full, checkpointing) {
        (false, false) => 4.0,
        (false, true) | (true, false) => 6.0,
        (true, true) => 8.0,
    };
    let attention_factor = if checkpointing { 4.0 } else { 3.0 };
    k * params as f64 + attention_factor * attention_per_token
}

/// Forward attention FLOPs per token at mean length `mean_tokens` (causal: half the square).
pub fn attention_forward_per_token(layers: u64, q_dim: u64, mean_tokens: f64) -> f64 {
    2.0 * layers as f64 * q_dim as f64 * mean_tokens
}

/// The fixed time every SageMaker job pays, in hours, for downloading `model_bytes`.
pub fn overhead_hours(model_bytes: u64) -> f64 {
    STARTUP_MINUTES / 60.0 + model_bytes as f64 / DOWNLOAD_BYTES_PER_SEC / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_per_token_follow_the_multipliers() {
        assert_eq!(train_flops_per_token(1_000, false, false, 0.0), 4_000.0);
        assert_eq!(train_flops_per_token(1_000, false, true, 0.0), 6_000.0);
        assert_eq!(train_flops_per_token(1_000, true, false, 0.0), 6_000.0);
        assert_eq!(train_flops_per_token(1_000, true, true, 10.0), 8_040.0);
        assert_eq!(attention_forward_per_token(32, 4096, 1000.0), 262_144_000.0);
    }
}
