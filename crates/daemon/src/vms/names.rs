//! VM names: DNS labels, generated as `adjective-animal` when the user gives none.

use banger_api::ApiError;

const ADJECTIVES: &[&str] = &[
    "able", "bold", "brave", "bright", "brisk", "calm", "clever", "cosy", "crisp", "daring", "deft", "eager", "fair",
    "fancy", "fast", "fine", "fond", "fresh", "gentle", "glad", "grand", "happy", "hardy", "keen", "kind", "lively",
    "lucky", "merry", "mighty", "neat", "nimble", "noble", "plucky", "polite", "proud", "quick", "quiet", "rapid",
    "ready", "sharp", "shiny", "sleek", "smart", "snug", "solid", "spry", "steady", "stout", "sunny", "swift", "tidy",
    "trusty", "vivid", "warm", "wise", "witty", "zesty",
];

const ANIMALS: &[&str] = &[
    "badger", "beaver", "bison", "bobcat", "crane", "cougar", "coyote", "dingo", "dolphin", "eagle", "falcon",
    "ferret", "finch", "fox", "gecko", "gibbon", "heron", "husky", "ibex", "impala", "jackal", "koala", "lemur",
    "lynx", "magpie", "marmot", "marten", "mink", "moose", "narwhal", "newt", "ocelot", "orca", "osprey", "otter",
    "owl", "panda", "parrot", "pelican", "puffin", "quail", "rabbit", "raven", "robin", "salmon", "seal", "shrew",
    "sparrow", "stoat", "swan", "tapir", "tiger", "toucan", "turtle", "walrus", "weasel", "wombat", "yak", "zebra",
];

/// Check `name` is a DNS label: 1–63 of `a-z 0-9 -`, not starting or ending with `-`.
pub fn validate(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_input(format!(
            "{name:?} is not a valid VM name: use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
        )))
    }
}

/// A random `adjective-animal` not in `taken`.
pub fn generate(taken: &[String]) -> Option<String> {
    let mut seed = seed();
    for _ in 0..64 {
        seed = xorshift(seed);
        let a = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
        seed = xorshift(seed);
        let b = ANIMALS[(seed % ANIMALS.len() as u64) as usize];
        let name = format!("{a}-{b}");
        if !taken.contains(&name) {
            return Some(name);
        }
    }
    None
}

/// Run the configured name generator (`namegen_path`) and take its first line.
pub fn from_program(program: &std::path::Path) -> Result<String, ApiError> {
    let out = banger_host::run(&program.to_string_lossy(), Vec::<String>::new())
        .map_err(|e| ApiError::bad_input(format!("namegen_path: {e}")))?;
    let name = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
    validate(&name).map_err(|e| {
        ApiError::bad_input(format!("namegen_path {} printed a bad name: {}", program.display(), e.message))
    })?;
    Ok(name)
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((std::process::id() as u64) << 32) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_label_rules() {
        for ok in ["calm-otter", "a", "vm1", "x-1-y", &"a".repeat(63)] {
            validate(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "Calm", "a_b", "a.b", "ä", "a b", &"a".repeat(64)] {
            let e = validate(bad).unwrap_err();
            assert_eq!(e.code, banger_api::ErrorCode::BadInput, "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid_and_avoid_taken_ones() {
        for _ in 0..50 {
            let n = generate(&[]).unwrap();
            validate(&n).unwrap();
            assert_eq!(n.split('-').count(), 2);
        }
        let all: Vec<String> =
            ADJECTIVES.iter().flat_map(|a| ANIMALS.iter().map(move |b| format!("{a}-{b}"))).collect();
        assert_eq!(generate(&all), None);
    }
}
