//! Which account a job goes to.
//!
//! The guidance says "randomly select an account from the list of currently used accounts". Random choice
//! needs no shared state and spreads load evenly on average; the rest of the shuffled list is the order in
//! which other accounts are tried when the first one fails transiently.

use rand::seq::SliceRandom;

/// A uniformly random order of the accounts in rotation: the first is the choice, the others the fallbacks.
pub fn rotation_order<T: Clone>(in_rotation: &[T], rng: &mut impl rand::Rng) -> Vec<T> {
    let mut order = in_rotation.to_vec();
    order.shuffle(rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn every_account_is_chosen_first_about_equally_often() {
        let accounts = ["a", "b", "c"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut firsts = [0u32; 3];
        for _ in 0..30_000 {
            let first = rotation_order(&accounts, &mut rng)[0];
            firsts[accounts.iter().position(|a| *a == first).unwrap_or(0)] += 1;
        }
        // 10,000 expected each; six standard deviations is about 490.
        assert!(firsts.iter().all(|n| (9_500..=10_500).contains(n)), "{firsts:?}");
    }

    #[test]
    fn an_empty_rotation_yields_no_account() {
        let none: [&str; 0] = [];
        assert!(rotation_order(&none, &mut rand::rng()).is_empty());
    }

    proptest! {
        #[test]
        fn the_order_is_a_permutation_of_the_rotation(n in 0usize..8, seed in any::<u64>()) {
            let accounts: Vec<usize> = (0..n).collect();
            let mut order = rotation_order(&accounts, &mut rand::rngs::StdRng::seed_from_u64(seed));
            order.sort_unstable();
            prop_assert_eq!(order, accounts);
        }
    }
}
