//! The stdlib catalogs: model families and checkpoints, SageMaker training instances, GPUs and
//! training images.
//!
//! They are data files under `stdlib/catalog/`, embedded at compile time and parsed once on first
//! use. Every row carries its source and the date it was read, so a figure in a diagnostic can be
//! traced. A model row names its `model_type`, whose row in the architecture table
//! ([`architecture`]) says how its layers are built and trained; the row's own fields are its
//! shape and tokenizer. A model that is not in the catalog can still be used through
//! `local_model("dir")`, whose facts come from the directory's `config.json` and
//! `tokenizer_config.json` read against the same table (see `check::local_model`).

pub mod architecture;

pub use architecture::{Architecture, Mla, Moe};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

pub const ARCHITECTURES_TOML: &str = include_str!("../../stdlib/catalog/architectures.toml");
pub const MODELS_TOML: &str = include_str!("../../stdlib/catalog/models.toml");
pub const INSTANCES_TOML: &str = include_str!("../../stdlib/catalog/instances.toml");
pub const GPUS_TOML: &str = include_str!("../../stdlib/catalog/gpus.toml");
pub const IMAGES_TOML: &str = include_str!("../../stdlib/catalog/images.toml");

/// Architecture and tokenizer facts of one model.
///
/// `family`, `architecture`, `decoder_layer` and `linear_modules` come from the model type's row
/// of the architecture table, which `arch` holds whole.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelFacts {
    pub id: String,
    /// config.json's `model_type` (the top-level one of a multimodal checkpoint).
    pub model_type: String,
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
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
    /// The exact parameter count of the checkpoint (vision tower included).
    pub params: u64,
    #[serde(default)]
    pub linear_modules: Vec<String>,
    pub attention_bias: bool,
    /// The mixture-of-experts shape, for MoE families.
    #[serde(default)]
    pub moe: Option<Moe>,
    /// The latent-attention shape, for `attention = "mla"` families.
    #[serde(default)]
    pub mla: Option<Mla>,
    /// Parameters of a multimodal checkpoint's vision tower and projector.
    #[serde(default)]
    pub vision_params: u64,
    /// How this checkpoint stores its weights (`mxfp4`, `fp8`; empty for 16-bit). A `local_model`
    /// folder stored otherwise quantized has its `quant_method` here (`bitsandbytes`, `gptq`, ...).
    #[serde(default)]
    pub weights: String,
    pub instruct: bool,
    pub chat_template: String,
    pub bos_token: String,
    pub eos_token: String,
    pub eot_token: String,
    pub pad_token: String,
    pub reserved_pad_token: String,
    pub template_adds_bos: bool,
    pub stop_tokens: Vec<String>,
    /// The message field the chat template reads an assistant's reasoning from (`reasoning_content`,
    /// `thinking`); empty when it reads none (check/template_reasoning.rs).
    #[serde(default)]
    pub reasoning_field: String,
    /// Whose reasoning the template leaves out: `earlier` (assistant turns before the last user
    /// message), `all`, or empty.
    #[serde(default)]
    pub drops_reasoning: String,
    /// The largest token id among the special tokens above, where it is known: the embedding must
    /// have more rows than this.
    #[serde(default)]
    pub max_token_id: Option<u64>,
    /// What the chat template does with a system message: `native`, `folded` (into the first user
    /// turn), `last_user` (into the last user turn only, so a conversation ending with the
    /// assistant's answer loses it) or `refused` (it raises).
    #[serde(default = "native")]
    pub template_system: String,
    pub source: String,
    pub date: String,
    #[serde(default)]
    pub note: String,
    /// The model type's row of the architecture table.
    #[serde(skip)]
    pub arch: Arc<Architecture>,
}

fn native() -> String {
    "native".to_owned()
}

impl ModelFacts {
    /// Takes the family facts from the model type's row of the architecture table.
    pub fn with_arch(mut self, arch: Arc<Architecture>) -> ModelFacts {
        self.family = arch.family.clone();
        self.architecture = arch.architecture.clone();
        self.decoder_layer = arch.decoder_layer.clone();
        self.linear_modules = arch.linear_modules.clone();
        self.arch = arch;
        self
    }

    /// The attention kernel a train node runs with: its own choice, else the family's.
    pub fn attention<'a>(&'a self, chosen: Option<&'a str>) -> &'a str {
        chosen.unwrap_or(if self.arch.attn_implementation.is_empty() { "sdpa" } else { &self.arch.attn_implementation })
    }

    /// The parameters split by kind (experts, active, root unit, ...).
    pub fn counts(&self) -> architecture::Params {
        architecture::params(self)
    }
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
struct ArchitectureFile {
    architecture: Vec<Architecture>,
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

/// The rows of models.toml. The embedded catalog reads a row's TOML the first time it is looked up:
/// most pipelines name one or two of the rows, and reading them all would double the start-up
/// time of `tunec check` (docs/performance.md). [`Catalog::parse`] reads them all at once.
#[derive(Debug)]
pub struct Models {
    rows: Vec<ModelRow>,
    architectures: Vec<Arc<Architecture>>,
}

#[derive(Debug)]
struct ModelRow {
    /// The `id` line of the row's text, which a test holds equal to the parsed `id`.
    id: String,
    text: String,
    facts: OnceLock<ModelFacts>,
}

impl Models {
    /// Splits models.toml at its `[[model]]` headers, reading only each row's `id`.
    fn split(text: &str, architectures: &[Arc<Architecture>]) -> Models {
        let mut rows: Vec<ModelRow> = Vec::new();
        for line in text.split_inclusive('\n') {
            if line.trim_end() == "[[model]]" {
                rows.push(ModelRow { id: String::new(), text: String::new(), facts: OnceLock::new() });
            }
            let Some(row) = rows.last_mut() else { continue };
            row.text.push_str(line);
            if row.id.is_empty() {
                if let Some(rest) = line.strip_prefix("id = \"") {
                    row.id = rest.split('"').next().unwrap_or_default().to_owned();
                }
            }
        }
        Models { rows, architectures: architectures.to_vec() }
    }

    /// Reads one row, with its architecture row.
    fn read(&self, text: &str) -> Result<ModelFacts, String> {
        let file: ModelFile = toml::from_str(text).map_err(|e| format!("models.toml: {e}"))?;
        let Some(model) = file.model.into_iter().next() else {
            return Err("models.toml: a `[[model]]` header without a row".to_owned());
        };
        match self.architectures.iter().find(|a| a.model_type == model.model_type) {
            Some(arch) => Ok(model.with_arch(arch.clone())),
            None => Err(format!(
                "models.toml: `{}` has model_type `{}`, which has no architecture row",
                model.id, model.model_type
            )),
        }
    }

    fn facts<'a>(&'a self, row: &'a ModelRow) -> &'a ModelFacts {
        row.facts.get_or_init(|| {
            self.read(&row.text).unwrap_or_else(|e| panic!("the embedded stdlib catalog is valid: {e}"))
        })
    }

    /// Every row, read as it is reached.
    pub fn iter(&self) -> impl Iterator<Item = &ModelFacts> {
        self.rows.iter().map(|row| self.facts(row))
    }

    /// The Hub ids of the rows, without reading the rows.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|row| row.id.as_str())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A row by its Hub id, ignoring ASCII case as the Hub does.
    fn find(&self, id: &str) -> Option<&ModelFacts> {
        self.rows.iter().find(|row| row.id.eq_ignore_ascii_case(id)).map(|row| self.facts(row))
    }
}

impl<'a> IntoIterator for &'a Models {
    type Item = &'a ModelFacts;
    type IntoIter = Box<dyn Iterator<Item = &'a ModelFacts> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[derive(Debug)]
pub struct Catalog {
    /// The architecture table, one row per supported `model_type`.
    pub architectures: Vec<Arc<Architecture>>,
    pub models: Models,
    pub instances: Vec<Instance>,
    /// GPU facts and the estimator's utilisation assumptions.
    pub gpus: Vec<GpuFacts>,
    /// Training images by transformers and PyTorch version.
    pub images: Vec<Image>,
}

impl Catalog {
    /// Parses the catalog texts, every model row included. Every model row must name a
    /// `model_type` of the architecture table, and its `id` line must be its `id`.
    pub fn parse(
        architectures: &str,
        models: &str,
        instances: &str,
        gpus: &str,
        images: &str,
    ) -> Result<Catalog, String> {
        let catalog = Catalog::parse_lazily(architectures, models, instances, gpus, images)?;
        let whole: ModelFile = toml::from_str(models).map_err(|e| format!("models.toml: {e}"))?;
        if whole.model.len() != catalog.models.len() {
            return Err(format!(
                "models.toml: {} rows, but {} lines `[[model]]`",
                whole.model.len(),
                catalog.models.len()
            ));
        }
        for row in &catalog.models.rows {
            let facts = catalog.models.read(&row.text)?;
            if facts.id != row.id {
                return Err(format!("models.toml: the row of `{}` has no line `id = \"{}\"`", facts.id, facts.id));
            }
            let _ = row.facts.set(facts);
        }
        Ok(catalog)
    }

    /// Parses the catalog texts but models.toml's rows, which are read when first looked up.
    fn parse_lazily(
        architectures: &str,
        models: &str,
        instances: &str,
        gpus: &str,
        images: &str,
    ) -> Result<Catalog, String> {
        let architectures: ArchitectureFile =
            toml::from_str(architectures).map_err(|e| format!("architectures.toml: {e}"))?;
        let architectures: Vec<Arc<Architecture>> = architectures.architecture.into_iter().map(Arc::new).collect();
        let models = Models::split(models, &architectures);
        let instances: InstanceFile = toml::from_str(instances).map_err(|e| format!("instances.toml: {e}"))?;
        let gpus: GpuFile = toml::from_str(gpus).map_err(|e| format!("gpus.toml: {e}"))?;
        let images: ImageFile = toml::from_str(images).map_err(|e| format!("images.toml: {e}"))?;
        Ok(Catalog { architectures, models, instances: instances.instance, gpus: gpus.gpu, images: images.image })
    }

    /// The catalog embedded from `stdlib/catalog/`, its model rows read as they are looked up. Its
    /// validity is a build invariant that the test suite checks ([`Catalog::parse`] on the same
    /// texts), so failing to parse it here is a bug in the release, not bad input.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse_lazily(ARCHITECTURES_TOML, MODELS_TOML, INSTANCES_TOML, GPUS_TOML, IMAGES_TOML)
                .expect("the embedded stdlib catalog is valid TOML")
        })
    }

    /// The architecture row of a `model_type`.
    pub fn architecture(&self, model_type: &str) -> Option<&Arc<Architecture>> {
        self.architectures.iter().find(|a| a.model_type == model_type)
    }

    /// Looks a model up by its Hub id, ignoring ASCII case as the Hub does.
    pub fn model(&self, id: &str) -> Option<&ModelFacts> {
        self.models.find(id)
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
        let whole = Catalog::parse(ARCHITECTURES_TOML, MODELS_TOML, INSTANCES_TOML, GPUS_TOML, IMAGES_TOML)
            .expect("every row of the embedded catalog parses, with its id line");
        assert!(whole.models.ids().eq(Catalog::builtin().models.ids()));
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

    /// The parameter count of every row follows from its shape and its family's row of the
    /// architecture table, so a typo in either is caught. (The counts themselves were taken from
    /// transformers: tests/python/test_architecture_table.py builds each row on the meta device.)
    #[test]
    fn parameter_counts_follow_from_the_shape() {
        for m in &Catalog::builtin().models {
            assert_eq!(m.counts().total, m.params, "{}", m.id);
        }
    }

    /// The Llama arithmetic written out once by hand: embeddings, attention, MLP, norms, head.
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

    #[test]
    fn every_architecture_row_is_consistent() {
        let catalog = Catalog::builtin();
        let mut seen = std::collections::BTreeSet::new();
        for a in &catalog.architectures {
            assert!(seen.insert(a.model_type.as_str()), "{}: one row per model type", a.model_type);
            assert!(!a.source.is_empty() && a.date.len() == 10, "{}: a source and a date", a.model_type);
            assert!(a.transformers.split('.').all(|p| p.parse::<u32>().is_ok()), "{}: a version", a.model_type);
            assert!(
                ["sdpa", "eager", "flash_attention_2"].contains(&a.attn_implementation.as_str()),
                "{}",
                a.model_type
            );
            assert!(a.refusal(&a.attn_implementation).is_none(), "{}: the default kernel is not refused", a.model_type);
            for r in &a.attn_refused {
                assert!(["error", "warning"].contains(&r.severity.as_str()), "{}: {}", a.model_type, r.severity);
            }
            assert_eq!(
                a.is_moe(),
                !a.experts.is_empty(),
                "{}: `experts` names the experts of a MoE family",
                a.model_type
            );
            assert_eq!(a.is_moe(), !a.router.is_empty(), "{}: a MoE family names its router", a.model_type);
            assert_eq!(
                a.multimodal(),
                !a.vision.is_empty(),
                "{}: a multimodal family has a vision formula",
                a.model_type
            );
            assert!(
                !a.linear_modules.iter().any(|m| a.router.ends_with(m.as_str())),
                "{}: routers stay out of all_linear",
                a.model_type
            );
            assert!(a.decoder_layer.ends_with("DecoderLayer"), "{}", a.model_type);
        }
        for m in &catalog.models {
            assert_eq!(m.arch.is_moe(), m.moe.is_some(), "{}: a MoE family's row has a `moe` shape", m.id);
            assert_eq!(
                m.arch.attention == architecture::AttentionKind::Mla,
                m.mla.is_some(),
                "{}: an MLA family's row has an `mla` shape",
                m.id
            );
            assert_eq!(m.arch.multimodal(), m.vision_params > 0, "{}: a multimodal row counts its vision tower", m.id);
            assert_eq!(m.weights, m.arch.weights, "{}: the published checkpoints' format", m.id);
            assert!(["native", "folded", "last_user", "refused"].contains(&m.template_system.as_str()), "{}", m.id);
            if let Some(id) = m.max_token_id {
                assert!(id < m.vocab_size, "{}: the special tokens have embedding rows", m.id);
            }
            let counts = m.counts();
            assert!(counts.active <= counts.text && counts.experts <= counts.text, "{}", m.id);
            assert!(counts.quantizable < counts.text && counts.root < counts.text, "{}", m.id);
        }
    }
}
