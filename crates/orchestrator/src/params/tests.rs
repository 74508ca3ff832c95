//! Parameters: plans, stages, validation.

use super::*;

#[test]
fn the_three_plans_have_14_9_and_7_stages() {
    let counts: Vec<usize> = Plan::ALL.iter().map(|p| p.stages(3).len()).collect();
    assert_eq!(counts, [14, 9, 7]);
    assert_eq!(Plan::Classic.stages(1).len(), 4);
    assert_eq!(Plan::JudgeRefines.stages(1).len(), 3);
}

#[test]
fn bad_parameters_are_named() {
    let check = |edit: &dyn Fn(&mut SearchParams), name: &str, words: &str| {
        let mut p = SearchParams::new("a lighthouse in a storm");
        edit(&mut p);
        match p.validate() {
            Err(Error::Param { name: n, problem }) => {
                assert_eq!(n, name);
                assert!(problem.contains(words), "{problem}");
            }
            other => panic!("{other:?}"),
        }
    };
    check(&|p| p.n = 10, "n", "not a multiple of m = 3");
    check(&|p| p.m = 0, "m", "outside 1-9");
    check(&|p| p.m = 12, "m", "outside 1-9");
    check(&|p| p.n = 0, "n", "outside 1-64");
    check(&|p| p.alpha = 1.5, "alpha", "outside 0-1");
    check(&|p| p.ensemble = 0, "ensemble", "outside 1-9");
    check(&|p| p.iterations = 0, "iterations", "outside 1-20");
    check(&|p| p.idea = "  ".into(), "idea", "empty");
    check(&|p| p.temperature = Some(3.0), "temperature", "outside 0-2");
    assert!(SearchParams::new("a fox").validate().is_ok());
}

#[test]
fn names_parse() {
    assert_eq!("judge-refines".parse::<Plan>().unwrap(), Plan::JudgeRefines);
    assert!(
        "greedy"
            .parse::<Plan>()
            .unwrap_err()
            .to_string()
            .contains("classic")
    );
    assert_eq!(
        "Scoring".parse::<JudgingMode>().unwrap(),
        JudgingMode::Scoring
    );
}
