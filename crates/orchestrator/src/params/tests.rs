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

#[test]
fn params_from_before_the_cost_levers_still_load_and_new_ones_round_trip() {
    // A checkpoint's params as written before render schedules, polish and budgets.
    let old = r#"{"idea":"a fox","n":9,"m":3,"iterations":3,"alpha":0.7,"ensemble":3,
        "judging":"comparative","plan":"fused","temperature":0.9,"seed":4,"detail":"low",
        "image_size":null,"image_quality":null}"#;
    let p: SearchParams = serde_json::from_str(old).unwrap();
    assert!(p.render_schedule.is_empty() && p.polish == 0 && p.budget_usd.is_none());
    assert_eq!(p.stage_count(), 9);
    assert_eq!(p.render_at(2), p.full_render());
    let mut q = p.clone();
    q.render_schedule = parse_schedule("low..high", 3).unwrap();
    (q.polish, q.budget_usd) = (3, Some(1.5));
    let back: SearchParams = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
    assert_eq!(back, q);
    assert_eq!(back.stage_count(), 11);
    assert!(back.rerenders_parents(1) && back.has_drafts());
    assert_eq!(back.render_at(7).quality.as_deref(), Some("high"));
}

#[test]
fn the_cost_levers_are_checked() {
    let mut p = SearchParams::new("a fox");
    p.polish = 17;
    assert!(matches!(
        p.validate(),
        Err(Error::Param { name: "polish", .. })
    ));
    p.polish = 3;
    p.budget_usd = Some(0.0);
    assert!(matches!(
        p.validate(),
        Err(Error::Param { name: "budget", .. })
    ));
    p.budget_usd = None;
    p.image_quality = Some("ultra".into());
    assert!(matches!(
        p.validate(),
        Err(Error::Param {
            name: "image_quality",
            ..
        })
    ));
}
