//! Turning provider and alias settings into a `Router`: which providers exist, which are usable, what serves each alias.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ChatProvider;
use crate::anthropic::{Anthropic, AnthropicConfig};
use crate::http::Timeouts;
use crate::offline::{OFFLINE_MODEL, OfflineModel};
use crate::openai::{MaxTokensField, OpenAiCompatible, OpenAiConfig};
use crate::retry::RetryPolicy;
use crate::router::{Alias, Router, Target};

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI's chat completions (Groq, OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter, Together...).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// One configured provider. Its `Debug` shows header names only: their values often carry keys.
#[derive(Clone)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub headers: Vec<(String, String)>,
    pub max_tokens_field: MaxTokensField,
    pub anthropic_version: String,
    /// Hosted APIs are unusable without a key; a local server (Ollama) is not.
    pub requires_key: bool,
    /// HTTP/2 from the first byte over plain `http` (h2c), so that many concurrent requests share a few
    /// connections. Over `https`, HTTP/2 is negotiated anyway.
    pub http2_prior_knowledge: bool,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("requires_key", &self.requires_key)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    pub fn is_usable(&self) -> bool {
        !self.requires_key || self.api_key.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetSettings {
    pub provider: String,
    pub model: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub temperature: Option<f32>,
}

#[derive(Debug, Clone)]
pub struct AliasSettings {
    pub name: String,
    pub targets: Vec<TargetSettings>,
    pub retry: RetryPolicy,
}

/// Everything needed to build the router.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub providers: Vec<ProviderSettings>,
    pub aliases: Vec<AliasSettings>,
    pub timeouts: Timeouts,
    /// In development, aliases left without a usable provider are served by the offline model, which
    /// pauses this long between words; `None` (production) leaves them unavailable.
    pub offline_word_delay: Option<Duration>,
}

/// The router, and one line per alias for the start-up log.
#[derive(Debug)]
pub struct Built {
    pub router: Router,
    pub notes: Vec<String>,
}

/// Builds every usable provider and resolves each alias to its usable targets.
pub fn build(settings: &RegistrySettings) -> Result<Built, String> {
    let build_client = |http2_prior_knowledge| {
        crate::http::HttpClient::new(settings.timeouts.connect, http2_prior_knowledge)
            .map_err(|err| format!("cannot build the HTTP client: {err}"))
    };
    let shared = build_client(false)?;
    // The h2c providers share a client of their own, made only if one is configured.
    let mut h2c = None;
    let mut providers: Vec<Arc<dyn ChatProvider>> = Vec::new();
    for spec in settings.providers.iter().filter(|p| p.is_usable()) {
        let client = if spec.http2_prior_knowledge {
            match &h2c {
                Some(client) => client,
                None => h2c.insert(build_client(true)?),
            }
        } else {
            &shared
        };
        let provider: Arc<dyn ChatProvider> = match spec.kind {
            ProviderKind::Openai => Arc::new(OpenAiCompatible::new(
                OpenAiConfig {
                    name: spec.name.clone(),
                    base_url: spec.base_url.clone(),
                    api_key: spec.api_key.clone(),
                    headers: spec.headers.clone(),
                    max_tokens_field: spec.max_tokens_field,
                    timeouts: settings.timeouts,
                },
                client.clone(),
            )?),
            ProviderKind::Anthropic => Arc::new(Anthropic::new(
                AnthropicConfig {
                    name: spec.name.clone(),
                    base_url: spec.base_url.clone(),
                    api_key: spec.api_key.clone(),
                    version: spec.anthropic_version.clone(),
                    headers: spec.headers.clone(),
                    timeouts: settings.timeouts,
                },
                client.clone(),
            )?),
        };
        providers.push(provider);
    }
    let offline: Option<Arc<dyn ChatProvider>> =
        settings.offline_word_delay.map(|delay| Arc::new(OfflineModel::new(delay)) as Arc<dyn ChatProvider>);

    let mut notes = Vec::new();
    let mut aliases = Vec::new();
    for alias in &settings.aliases {
        for target in &alias.targets {
            if !settings.providers.iter().any(|p| p.name == target.provider) {
                return Err(format!("alias {}: unknown provider {:?}", alias.name, target.provider));
            }
        }
        let mut targets: Vec<Target> = alias
            .targets
            .iter()
            .filter_map(|t| {
                let provider = providers.iter().find(|p| p.name() == t.provider)?;
                Some(Target {
                    provider: Arc::clone(provider),
                    model: t.model.clone(),
                    context_window: t.context_window,
                    max_output_tokens: t.max_output_tokens,
                    temperature: t.temperature,
                })
            })
            .collect();
        if targets.is_empty() {
            if let Some(offline) = &offline {
                let (context_window, max_output_tokens) =
                    alias.targets.first().map_or((8192, 1024), |t| (t.context_window, t.max_output_tokens));
                targets.push(Target {
                    provider: Arc::clone(offline),
                    model: OFFLINE_MODEL.to_owned(),
                    context_window,
                    max_output_tokens,
                    temperature: None,
                });
                notes.push(format!(
                    "model alias {:?} is served by the built-in offline model (no key for {}); replies are not from an LLM",
                    alias.name,
                    {
                        let mut names: Vec<&str> = alias.targets.iter().map(|t| t.provider.as_str()).collect();
                        names.dedup();
                        names.join(", ")
                    }
                ));
            } else {
                notes.push(format!("model alias {:?} has no usable provider: it answers 503", alias.name));
            }
        } else {
            let served: Vec<String> = targets.iter().map(|t| format!("{}:{}", t.provider.name(), t.model)).collect();
            notes.push(format!("model alias {:?} -> {}", alias.name, served.join(" then ")));
        }
        aliases.push(Alias { name: alias.name.clone(), targets, retry: alias.retry });
    }
    Ok(Built { router: Router::new(aliases), notes })
}
