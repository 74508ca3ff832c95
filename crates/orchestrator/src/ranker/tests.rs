//! Ranking: ballots, majority, ranks and verdicts.

use super::*;

fn ranker(mode: JudgingMode, ensemble: u32) -> ImageRanker {
    ImageRanker {
        idea: "a fox".into(),
        alpha: 0.7,
        ensemble,
        mode,
        detail: ImageDetail::Low,
        seed: 1,
    }
}

fn child() -> Entrant {
    Entrant {
        prior_rank: None,
        prior: None,
    }
}

fn parent(rank: u32) -> Entrant {
    let mut v = empty_verdict();
    v.total = 5.0;
    v.rank = rank;
    Entrant {
        prior_rank: Some(rank),
        prior: Some(v),
    }
}

#[test]
fn comparative_ballots_skip_parent_pairs_and_swap_about_half() {
    // n = 9 children with m = 3 parents: 66 pairs, less the 3 between parents, 3 votes.
    let mut pool: Vec<Entrant> = (0..9).map(|_| child()).collect();
    pool.extend((1..=3).map(parent));
    let ballots = ranker(JudgingMode::Comparative, 3).ballots(1, &pool);
    assert_eq!(ballots.len(), 63 * 3);
    let swapped = ballots
        .iter()
        .filter(|b| matches!(b, Ballot::Pair { swapped: true, .. }))
        .count();
    assert!((60..130).contains(&swapped), "{swapped} of 189 swapped");
    // Deterministic for a seed.
    assert_eq!(
        ballots,
        ranker(JudgingMode::Comparative, 3).ballots(1, &pool)
    );
    // Scoring asks only the children, ensemble times each.
    assert_eq!(ranker(JudgingMode::Scoring, 3).ballots(1, &pool).len(), 27);
}

fn pair_vote(first_wins: bool) -> Option<VoteResult> {
    Some(VoteResult::Pair {
        first_wins,
        first_aligns: first_wins,
        first_pleases: first_wins,
        reasons: "r".into(),
        strengths: vec![format!("s{first_wins}")],
        weaknesses: vec![],
    })
}

#[test]
fn majorities_rank_the_pool_and_parents_keep_their_order() {
    // Entrants: 0 and 1 children, 2 and 3 parents (2 ranked above 3 before).
    let pool = vec![child(), child(), parent(1), parent(2)];
    let r = ranker(JudgingMode::Comparative, 3);
    let mut votes = Vec::new();
    for b in r.ballots(1, &pool) {
        let Ballot::Pair {
            first,
            second,
            vote,
            ..
        } = b
        else {
            unreachable!()
        };
        // Child 0 beats everyone 2-1; child 1 loses to everyone 2-1.
        let first_wins = match (first, second) {
            (0, _) => vote != 2,
            (1, _) => vote == 2,
            _ => unreachable!(),
        };
        votes.push((b, pair_vote(first_wins)));
    }
    // A lost dissenting vote changes nothing.
    assert!(matches!(
        votes[2].0,
        Ballot::Pair {
            first: 0,
            second: 1,
            vote: 2,
            ..
        }
    ));
    votes[2].1 = None;
    let v = r.rank(&pool, &votes);
    let ranks: Vec<u32> = v.iter().map(|v| v.as_ref().unwrap().rank).collect();
    assert_eq!(ranks, [1, 4, 2, 3]);
    let best = v[0].as_ref().unwrap();
    assert_eq!((best.wins, best.comparisons), (3, 3));
    assert_eq!(best.total, 10.0);
}

#[test]
fn scoring_averages_votes_and_keeps_parents_scores() {
    let pool = vec![child(), parent(1)];
    let r = ranker(JudgingMode::Scoring, 2);
    let score = |t: f64| {
        Some(VoteResult::Score {
            alignment: t,
            aesthetic: t,
            total: t,
            reasons: "r".into(),
            strengths: vec!["bold".into(), "Bold".into()],
            weaknesses: vec![],
        })
    };
    let ballots = r.ballots(1, &pool);
    let votes = vec![(ballots[0], score(6.0)), (ballots[1], score(7.0))];
    let v = r.rank(&pool, &votes);
    let c = v[0].as_ref().unwrap();
    assert_eq!((c.total, c.votes, c.rank), (6.5, 2, 1));
    assert_eq!(c.strengths, ["bold"]);
    assert_eq!(v[1].as_ref().unwrap().rank, 2);
    // A child whose every vote failed has no verdict and ranks nowhere.
    let v = r.rank(&pool, &[(ballots[0], None)]);
    assert!(v[0].is_none());
}
