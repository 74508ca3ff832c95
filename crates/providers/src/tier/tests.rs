//! Tier and operation names.

use super::*;

#[test]
fn tiers_round_trip_through_their_names() {
    for t in Tier::ALL {
        assert_eq!(t.as_str().parse::<Tier>(), Ok(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
    assert_eq!(" Flex ".parse::<Tier>(), Ok(Tier::Flex));
    assert!("priority".parse::<Tier>().is_err());
}

#[test]
fn operations_have_roles() {
    assert_eq!(Operation::Judge.role(), Role::Vision);
    assert_eq!(Operation::Render.role(), Role::Image);
    assert_eq!(Operation::Refine.role(), Role::Llm);
}
