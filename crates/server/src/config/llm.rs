//! Model settings: built-in providers and aliases, adjusted by the file and the environment.

use std::time::Duration;

use llm_providers::http::Timeouts;
use llm_providers::openai::MaxTokensField;
use llm_providers::registry::{AliasSettings, ProviderKind, ProviderSettings, RegistrySettings, TargetSettings};
use llm_providers::retry::RetryPolicy;
use secrecy::SecretString;

use super::file::{FileAlias, FileProvider};

/// The built-in providers: name, kind, base URL variable and default, key variable.
const BUILT_IN_PROVIDERS: [(&str, ProviderKind, &str, &str, &str); 3] = [
    ("groq", ProviderKind::Openai, "GROQ_BASE_URL", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("openai", ProviderKind::Openai, "OPENAI_BASE_URL", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("anthropic", ProviderKind::Anthropic, "ANTHROPIC_BASE_URL", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
];

/// The default aliases, on Groq's production models (131,072-token windows).
fn built_in_aliases() -> Vec<AliasSettings> {
    let target = |model: &str, max_output_tokens| TargetSettings {
        provider: "groq".to_owned(),
        model: model.to_owned(),
        context_window: 131_072,
        max_output_tokens,
        temperature: Some(0.7),
    };
    let alias = |name: &str, targets| AliasSettings { name: name.to_owned(), targets, retry: RetryPolicy::default() };
    vec![
        alias("fast", vec![target("llama-3.1-8b-instant", 2048)]),
        alias("balanced", vec![target("llama-3.3-70b-versatile", 4096), target("llama-3.1-8b-instant", 2048)]),
        alias("smart", vec![target("openai/gpt-oss-120b", 8192), target("llama-3.3-70b-versatile", 4096)]),
    ]
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The providers: built-ins (keys and URLs from the environment, which wins), then the file's.
pub(super) fn providers(
    env: &dyn Fn(&str) -> Option<String>,
    file: &std::collections::BTreeMap<String, FileProvider>,
    problems: &mut Vec<String>,
) -> Vec<ProviderSettings> {
    let mut providers = Vec::new();
    for (name, kind, url_var, default_url, key_var) in BUILT_IN_PROVIDERS {
        let spec = file.get(name).cloned().unwrap_or_default();
        let key = non_empty(env(key_var))
            .or_else(|| spec.api_key_env.as_deref().and_then(|var| non_empty(env(var))))
            .or_else(|| non_empty(spec.api_key.clone()));
        providers.push(ProviderSettings {
            name: name.to_owned(),
            kind: spec.kind.unwrap_or(kind),
            base_url: non_empty(env(url_var)).or(spec.base_url.clone()).unwrap_or_else(|| default_url.to_owned()),
            api_key: key.map(SecretString::from),
            headers: spec.headers.into_iter().collect(),
            max_tokens_field: spec.max_tokens_field.unwrap_or(MaxTokensField::MaxCompletionTokens),
            anthropic_version: spec.anthropic_version.unwrap_or_else(|| "2023-06-01".to_owned()),
            requires_key: spec.requires_key.unwrap_or(true),
            http2_prior_knowledge: spec.http2_prior_knowledge.unwrap_or(false),
        });
    }
    for (name, spec) in file.iter().filter(|(name, _)| !BUILT_IN_PROVIDERS.iter().any(|b| b.0 == name.as_str())) {
        let (Some(kind), Some(base_url)) = (spec.kind, spec.base_url.clone()) else {
            problems
                .push(format!("providers.{name} (in CONFIG_FILE): needs `kind` (openai or anthropic) and `base_url`"));
            continue;
        };
        let key =
            spec.api_key_env.as_deref().and_then(|var| non_empty(env(var))).or_else(|| non_empty(spec.api_key.clone()));
        providers.push(ProviderSettings {
            name: name.clone(),
            kind,
            base_url,
            requires_key: spec.requires_key.unwrap_or(false),
            api_key: key.map(SecretString::from),
            headers: spec.headers.clone().into_iter().collect(),
            max_tokens_field: spec.max_tokens_field.unwrap_or(MaxTokensField::MaxTokens),
            anthropic_version: spec.anthropic_version.clone().unwrap_or_else(|| "2023-06-01".to_owned()),
            http2_prior_knowledge: spec.http2_prior_knowledge.unwrap_or(false),
        });
    }
    providers
}

/// The aliases: built-ins in their order, each replaced by a file alias of the same name, then the
/// file's new aliases in name order.
pub(super) fn aliases(
    file: &std::collections::BTreeMap<String, FileAlias>,
    providers: &[ProviderSettings],
    problems: &mut Vec<String>,
) -> Vec<AliasSettings> {
    let from_file = |name: &str, spec: &FileAlias| {
        let defaults = RetryPolicy::default();
        AliasSettings {
            name: name.to_owned(),
            targets: spec
                .targets
                .iter()
                .map(|t| TargetSettings {
                    provider: t.provider.clone(),
                    model: t.model.clone(),
                    context_window: t.context_window,
                    max_output_tokens: t.max_output_tokens,
                    temperature: t.temperature,
                })
                .collect(),
            retry: RetryPolicy {
                max_retries: spec.max_retries.unwrap_or(defaults.max_retries),
                initial_backoff: spec.initial_backoff_ms.map_or(defaults.initial_backoff, Duration::from_millis),
                max_backoff: spec.max_backoff_ms.map_or(defaults.max_backoff, Duration::from_millis),
                max_retry_after: spec.max_retry_after_ms.map_or(defaults.max_retry_after, Duration::from_millis),
            },
        }
    };
    let mut aliases: Vec<AliasSettings> = built_in_aliases()
        .into_iter()
        .map(|built_in| match file.get(&built_in.name) {
            Some(spec) => from_file(&built_in.name, spec),
            None => built_in,
        })
        .collect();
    for (name, spec) in file {
        if !aliases.iter().any(|a| &a.name == name) {
            aliases.push(from_file(name, spec));
        }
    }
    for alias in &aliases {
        if alias.targets.is_empty() {
            problems.push(format!("aliases.{} (in CONFIG_FILE): needs at least one target", alias.name));
        }
        for target in &alias.targets {
            if !providers.iter().any(|p| p.name == target.provider) {
                problems.push(format!("aliases.{}: unknown provider {:?}", alias.name, target.provider));
            }
            if target.max_output_tokens >= target.context_window {
                problems.push(format!(
                    "aliases.{}: max_output_tokens ({}) must be smaller than context_window ({})",
                    alias.name, target.max_output_tokens, target.context_window
                ));
            }
        }
    }
    aliases
}

/// Assembles the registry settings; `offline` is the development fallback's word delay, if allowed.
pub(super) fn registry(
    providers: Vec<ProviderSettings>,
    aliases: Vec<AliasSettings>,
    timeouts: Timeouts,
    offline: Option<Duration>,
) -> RegistrySettings {
    RegistrySettings { providers, aliases, timeouts, offline_word_delay: offline }
}
