//! The stdlib catalogs: model architectures and SageMaker training instances.
//!
//! Both are data files under `stdlib/catalog/`, embedded at compile time and parsed once on first
//! use. Every row carries its source and the date it was read, so a figure in a diagnostic can be
//! traced. A model that is not in the catalog can still be used through `local_model("dir")`, whose
//! facts come from the directory's `config.json` and `tokenizer_config.json` (see `local_model`).

use serde::Deserialize;
use std::sync::OnceLock;

pub const MODELS_TOML: &str = include_str!("../../stdlib/catalog/models.toml");
pub const INSTANCES_TOML: &str = include_str!("../../stdlib/catalog/instances.toml");
pub const GPUS_TOML: &str = include_str!("../../stdlib/catalog/gpus.toml");
pub const IMAGES_TOML: &str = include_str!("../../stdlib/catalog/images.toml");

/// Architecture and tokenizer facts of one model.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ModelFacts {
    pub id: String,
    pub family: String,
    pub architecture: String,
    pub decoder_layer: String,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_layers: u64,
    pub num_heads: u64,
    pub num_kv_heads: u64,
    pub head_dim: u64,
    pub vocab_size: u64,
    pub max_position_embeddings: u64,
    pub tied_embeddings: bool,
    pub params: u64,
    pub linear_modules: Vec<String>,
    pub attention_bias: bool,
    pub instruct: bool,
    pub chat_template: String,
    pub bos_token: String,
    pub eos_token: String,
    pub eot_token: String,
    pub pad_token: String,
    pub reserved_pad_token: String,
    pub template_adds_bos: bool,
    pub stop_tokens: Vec<String>,
    pub source: String,
    pub date: String,
    #[serde(default)]
    pub note: String,
}

/// Whether an instance has a CUDA GPU, a Neuron accelerator, or neither.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    Cuda,
    Neuron,
    None,
}

/// One SageMaker training instance type.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Instance {
    pub name: String,
    pub accelerator: Accelerator,
    pub gpu: String,
    pub gpu_count: u64,
    pub gpu_memory_mib: u64,
    pub bf16: bool,
    pub gpu_bf16_tflops: f64,
    pub vcpu: u64,
    pub memory_gib: u64,
    pub local_storage_gb: u64,
    pub price_usd_per_hour: f64,
    pub price_region: String,
    pub price_date: String,
    pub source: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Deserialize)]
struct ModelFile {
    model: Vec<ModelFacts>,
}

#[derive(Debug, Deserialize)]
struct InstanceFile {
    instance: Vec<Instance>,
}

/// A Hugging Face training image (DLC) and the ECR registries that serve it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Image {
    pub transformers: String,
    pub pytorch: String,
    pub repository: String,
    pub py: String,
    pub processor: String,
    pub container: String,
    pub source: String,
    pub date: String,
    pub registry: Vec<Registry>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Registry {
    pub account: String,
    pub regions: Vec<String>,
}

impl Image {
    /// The image URI in `region`, or `None` when no registry serves that region.
    pub fn uri(&self, region: &str) -> Option<String> {
        let registry = self.registry.iter().find(|r| r.regions.iter().any(|x| x == region))?;
        let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
        Some(format!(
            "{}.dkr.ecr.{region}.{domain}/{}:{}-transformers{}-{}-{}-{}",
            registry.account, self.repository, self.pytorch, self.transformers, self.processor, self.py, self.container
        ))
    }
}

#[derive(Debug, Deserialize)]
struct ImageFile {
    image: Vec<Image>,
}

/// GPU facts and the estimator's assumptions for one GPU type (stdlib/catalog/gpus.toml).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GpuFacts {
    pub name: String,
    pub bf16_tflops: f64,
    pub memory_bandwidth_gbps: f64,
    pub utilization_lora: f64,
    pub utilization_qlora: f64,
    pub utilization_full: f64,
    pub source: String,
    pub date: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Deserialize)]
struct GpuFile {
    gpu: Vec<GpuFacts>,
}

#[derive(Debug)]
pub struct Catalog {
    pub models: Vec<ModelFacts>,
    pub instances: Vec<Instance>,
    /// GPU facts and the estimator's utilisation assumptions.
    pub gpus: Vec<GpuFacts>,
    /// Training images by transformers and PyTorch version.
    pub images: Vec<Image>,
}

impl Catalog {
    /// Parses the catalog texts.
    pub fn parse(models: &str, instances: &str, gpus: &str, images: &str) -> Result<Catalog, String> {
        let models: ModelFile = toml::from_str(models).map_err(|e| format!("models.toml: {e}"))?;
        let instances: InstanceFile = toml::from_str(instances).map_err(|e| format!("instances.toml: {e}"))?;
        let gpus: GpuFile = toml::from_str(gpus).map_err(|e| format!("gpus.toml: {e}"))?;
        let images: ImageFile = toml::from_str(images).map_err(|e| format!("images.toml: {e}"))?;
        Ok(Catalog { models: models.model, instances: instances.instance, gpus: gpus.gpu, images: images.image })
    }

    /// The catalog embedded from `stdlib/catalog/`. Its validity is a build invariant that the
    /// test suite checks, so failing to parse it here is a bug in the release, not bad input.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(MODELS_TOML, INSTANCES_TOML, GPUS_TOML, IMAGES_TOML)
                .expect("the embedded stdlib catalog is valid TOML")
        })
    }

    /// Looks a model up by its Hub id, ignoring ASCII case as the Hub does.
    pub fn model(&self, id: &str) -> Option<&ModelFacts> {
        self.models.iter().find(|m| m.id.eq_ignore_ascii_case(id))
    }

    pub fn image(&self, transformers: &str, pytorch: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.transformers == transformers && i.pytorch == pytorch)
    }

    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_is_consistent() {
        let catalog = Catalog::builtin();
        assert!(catalog.models.len() >= 16, "the catalog covers the 16 reference models");
        for m in &catalog.models {
            assert_eq!(m.num_heads * m.head_dim % m.num_kv_heads, 0, "{}", m.id);
            assert!(m.num_heads % m.num_kv_heads == 0, "{}: heads divide into KV groups", m.id);
            assert!(!m.source.is_empty() && m.date.len() == 10, "{}: every row has a source and a date", m.id);
            assert!(!m.linear_modules.is_empty(), "{}", m.id);
            assert!(
                m.stop_tokens.contains(&m.eot_token) || m.eot_token == m.eos_token,
                "{}: eot stops generation",
                m.id
            );
        }
        for i in &catalog.instances {
            assert!(i.name.starts_with("ml."), "{}", i.name);
            assert!(!i.source.is_empty(), "{}: every row has a source", i.name);
            assert!(i.price_usd_per_hour == 0.0 || i.price_date.len() == 10, "{}: a price has a date", i.name);
            assert_eq!(i.accelerator == Accelerator::None, i.gpu_count == 0, "{}", i.name);
        }
        assert!(catalog.model("meta-llama/llama-3.1-8b-instruct").is_some());
        for i in catalog.instances.iter().filter(|i| i.accelerator == Accelerator::Cuda) {
            assert!(catalog.gpus.iter().any(|g| g.name == i.gpu), "{}: `{}` has a row in gpus.toml", i.name, i.gpu);
        }
        for g in &catalog.gpus {
            assert!(g.bf16_tflops > 0.0 && g.memory_bandwidth_gbps > 0.0, "{}", g.name);
            for u in [g.utilization_lora, g.utilization_qlora, g.utilization_full] {
                assert!(u > 0.0 && u < 1.0, "{}: utilisation is a fraction", g.name);
            }
        }
        let image = catalog.image("4.56.2", "2.8.0").expect("the seed's image");
        assert_eq!(
            image.uri("us-east-1").as_deref(),
            Some("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04")
        );
        assert_eq!(image.uri("eu-central-2"), None);
        let p4d = catalog.instance("ml.p4d.24xlarge").expect("p4d is in the catalog");
        assert_eq!((p4d.gpu_count, p4d.gpu_memory_mib), (8, 40960));
    }

    /// The parameter count of every Llama-style row follows from its shape (embeddings, attention,
    /// MLP, norms, untied head), so a typo in either is caught.
    #[test]
    fn llama_parameter_counts_follow_from_the_shape() {
        for m in Catalog::builtin().models.iter().filter(|m| m.family == "llama") {
            let h = m.hidden_size;
            let q = m.num_heads * m.head_dim;
            let kv = m.num_kv_heads * m.head_dim;
            let layer = h * q + 2 * h * kv + q * h + 3 * h * m.intermediate_size + 2 * h;
            let head = if m.tied_embeddings { 0 } else { m.vocab_size * h };
            assert_eq!(m.params, m.vocab_size * h + m.num_layers * layer + h + head, "{}", m.id);
        }
    }
}
