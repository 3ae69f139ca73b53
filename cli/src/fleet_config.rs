//! What every fleet process reads from its environment: the broker and store URLs (which hold
//! passwords, so never flags), the fleet key file and the namespace. Every bad value is reported
//! at once; URLs are never printed with their passwords.

use std::path::PathBuf;

use mailferry_fleet::seal::FleetKeys;

use crate::args::SecretEnv;

/// The shared fleet settings.
pub struct FleetConfig {
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// The fleet keys.
    pub keys: FleetKeys,
    /// Prefix of every exchange, queue and key.
    pub namespace: String,
}

impl FleetConfig {
    /// Reads `MAILFERRY_AMQP_URL`, `MAILFERRY_REDIS_URL`, `MAILFERRY_SECRET_KEY_FILE` and
    /// `MAILFERRY_NAMESPACE`.
    pub fn from_env(env: &dyn SecretEnv) -> Result<FleetConfig, Vec<String>> {
        let mut errors = Vec::new();
        let mut required = |name: &str, what: &str| match env.var(name) {
            Some(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
            _ => {
                errors.push(format!("{name} is not set: {what}"));
                None
            }
        };
        let amqp_url = required(
            "MAILFERRY_AMQP_URL",
            "the RabbitMQ URL, e.g. amqp://user:password@rabbitmq:5672/%2f",
        );
        let redis_url = required(
            "MAILFERRY_REDIS_URL",
            "the Redis URL, e.g. redis://:password@redis:6379/0",
        );
        let key_file = required(
            "MAILFERRY_SECRET_KEY_FILE",
            "the fleet key file that seals credentials; create one with `mailferry keygen > fleet.key`",
        );
        let keys = key_file.and_then(|f| match FleetKeys::load(&PathBuf::from(&f)) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(format!("MAILFERRY_SECRET_KEY_FILE: {e}"));
                None
            }
        });
        let namespace = env
            .var("MAILFERRY_NAMESPACE")
            .unwrap_or_else(|| "mailferry".into());
        if namespace.is_empty()
            || namespace.len() > 64
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(format!(
                "MAILFERRY_NAMESPACE {namespace:?} must be 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        if let Some(u) = &amqp_url
            && !(u.starts_with("amqp://") || u.starts_with("amqps://"))
        {
            errors.push("MAILFERRY_AMQP_URL must start with amqp:// or amqps://".into());
        }
        if let Some(u) = &redis_url
            && !(u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            errors.push("MAILFERRY_REDIS_URL must start with redis:// or rediss://".into());
        }
        match (amqp_url, redis_url, keys) {
            (Some(amqp_url), Some(redis_url), Some(keys)) if errors.is_empty() => Ok(FleetConfig {
                amqp_url,
                redis_url,
                keys,
                namespace,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Env(HashMap<&'static str, String>);
    impl SecretEnv for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    #[test]
    fn every_missing_or_bad_value_is_reported_at_once() {
        let errs = FleetConfig::from_env(&Env(HashMap::from([
            ("MAILFERRY_NAMESPACE", "bad ns!".to_owned()),
            ("MAILFERRY_REDIS_URL", "http://x".to_owned()),
        ])))
        .err()
        .expect("invalid");
        let all = errs.join("\n");
        for needle in [
            "MAILFERRY_AMQP_URL is not set",
            "MAILFERRY_SECRET_KEY_FILE is not set",
            "MAILFERRY_NAMESPACE",
            "MAILFERRY_REDIS_URL must start",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
    }

    #[test]
    fn a_missing_key_file_is_a_clear_error() {
        let errs = FleetConfig::from_env(&Env(HashMap::from([
            ("MAILFERRY_AMQP_URL", "amqp://u:secretpw@h/%2f".to_owned()),
            ("MAILFERRY_REDIS_URL", "redis://h".to_owned()),
            (
                "MAILFERRY_SECRET_KEY_FILE",
                "/nonexistent/fleet.key".to_owned(),
            ),
        ])))
        .err()
        .expect("invalid");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("/nonexistent/fleet.key"));
        assert!(!errs[0].contains("secretpw"));
    }
}
