//! Input number `i` of a run: a pure function of the seed, `i`, the target and its seed corpus,
//! so the supervisor can rebuild any input the child ran, and a finding is reproducible.
//! There is no coverage feedback: the corpus does not grow during a run.

use crate::mutate::{self, Sources};
use crate::rng::Rng;
use crate::targets::Target;

/// Writes input number `iteration` of a run seeded with `seed` into `out`.
///
/// A base (a corpus entry, a generated input, or nothing) gets 1, 2, 4 or 8 stacked mutations;
/// one generated input in four is left as generated.
pub fn build(target: &Target, corpus: &[Vec<u8>], seed: u64, iteration: u64, out: &mut Vec<u8>) {
    let mut rng = Rng::for_iteration(seed, iteration);
    out.clear();
    let generated = match target.generate {
        Some(generate) if corpus.is_empty() || rng.one_in(3) => {
            generate(&mut rng, out);
            true
        }
        _ => {
            if let Some(base) = rng.pick(corpus) {
                out.extend_from_slice(base);
            }
            false
        }
    };
    if generated && rng.one_in(4) {
        out.truncate(target.max_len);
        return;
    }
    let src = Sources {
        dictionaries: target.dictionaries,
        corpus,
        max_len: target.max_len,
    };
    for _ in 0..1usize << rng.below(4) {
        mutate::once(&mut rng, out, &src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets;

    #[test]
    fn inputs_are_reproducible_and_varied() {
        let corpus = vec![
            b"* 1 FETCH (UID 7)\r\n".to_vec(),
            b"a1 OK done\r\n".to_vec(),
        ];
        for target in targets::ALL {
            let mut a = Vec::new();
            let mut b = Vec::new();
            let mut distinct = std::collections::HashSet::new();
            for i in 0..500 {
                build(target, &corpus, 42, i, &mut a);
                build(target, &corpus, 42, i, &mut b);
                assert_eq!(a, b, "{} input {i}", target.name);
                assert!(a.len() <= target.max_len);
                distinct.insert(a.clone());
            }
            assert!(
                distinct.len() > 400,
                "{}: {} distinct",
                target.name,
                distinct.len()
            );
        }
    }

    #[test]
    fn deep_nesting_runs_occur() {
        let src = Sources {
            dictionaries: &[&[b"("]],
            corpus: &[],
            max_len: 256 * 1024,
        };
        let mut rng = Rng::for_iteration(1, 0);
        let mut buf = Vec::new();
        let deep = (0..5_000)
            .filter(|_| {
                buf.clear();
                mutate::once(&mut rng, &mut buf, &src);
                buf.len() >= 10_000
            })
            .count();
        assert!(deep > 0, "no run of 10,000 '(' in 5,000 mutations");
    }
}
