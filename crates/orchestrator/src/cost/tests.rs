//! Prices, the tracker and the report, checked against hand-computed figures.

use batch_format::Usage;
use providers::{Operation, Tier};

use super::pricing::is_snapshot_suffix;
use super::pricing::parse::is_size;
use super::report::{grouped, usd};
use super::*;

fn usage(input: u64, cached: Option<u64>, output: u64, reasoning: Option<u64>) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: input + output,
        cached_tokens: cached,
        reasoning_tokens: reasoning,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    assert!(close(actual, expected), "{actual} != {expected}");
}

#[test]
fn the_builtin_table_parses_and_covers_the_required_models() {
    let p = Pricing::builtin();
    for m in [
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "o4-mini",
        "o3",
    ] {
        let standard = p.token_prices(m, Tier::Standard).unwrap();
        let batch = p.token_prices(m, Tier::Batch).unwrap();
        assert!(
            standard.input > 0.0 && standard.output > standard.input,
            "{m}"
        );
        assert!(standard.cached_input < standard.input, "{m}");
        // The Batch API is half price, on every token kind.
        assert_close(batch.input, standard.input / 2.0);
        assert_close(batch.cached_input, standard.cached_input / 2.0);
        assert_close(batch.output, standard.output / 2.0);
    }
    for m in ["gpt-image-1", "gpt-image-1-mini", "dall-e-3", "dall-e-2"] {
        let s = p.image_price(m, Tier::Standard, None, None).unwrap();
        let b = p.image_price(m, Tier::Batch, None, None).unwrap();
        assert_close(b, s / 2.0);
    }
}

/// Costs computed by hand: (model, tier, input, cached, output, USD).
#[test]
fn chat_costs_match_hand_computed_figures() {
    let p = Pricing::builtin();
    type Case = (&'static str, Tier, u64, Option<u64>, u64, f64);
    let cases: &[Case] = &[
        // 1M in at $0.15 + 1M out at $0.60
        (
            "gpt-4o-mini",
            Tier::Standard,
            1_000_000,
            None,
            1_000_000,
            0.75,
        ),
        (
            "gpt-4o-mini",
            Tier::Batch,
            1_000_000,
            None,
            1_000_000,
            0.375,
        ),
        // 2,000 in (500 cached) and 300 out on gpt-4o: 1500*2.5 + 500*1.25 + 300*10 per 1M
        ("gpt-4o", Tier::Standard, 2_000, Some(500), 300, 0.007_375),
        ("gpt-4o", Tier::Batch, 2_000, Some(500), 300, 0.003_687_5),
        // gpt-5 flex: 10,000 in (all cached: 0.0625) + 1,000 out (5.00)
        ("gpt-5", Tier::Flex, 10_000, Some(10_000), 1_000, 0.005_625),
        // gpt-4.1-nano: 100k in at $0.10 + 10k out at $0.40
        (
            "gpt-4.1-nano",
            Tier::Standard,
            100_000,
            Some(0),
            10_000,
            0.014,
        ),
        // o3 standard: 1,000 in, 4,000 out (reasoning included) at $2 / $8
        ("o3", Tier::Standard, 1_000, None, 4_000, 0.034),
        // o4-mini flex: 1M cached at $0.1375
        ("o4-mini", Tier::Flex, 1_000_000, Some(1_000_000), 0, 0.1375),
        ("gpt-5-nano", Tier::Batch, 1_000_000, None, 1_000_000, 0.225),
    ];
    for &(model, tier, input, cached, output, expected) in cases {
        let cost = p
            .chat_cost(model, tier, &usage(input, cached, output, None))
            .unwrap();
        assert!(
            close(cost, expected),
            "{model} {tier}: {cost} != {expected}"
        );
    }
}

#[test]
fn batch_is_half_of_standard_and_cached_tokens_are_cheaper() {
    let p = Pricing::builtin();
    let u = usage(12_345, Some(4_096), 678, Some(300));
    for m in p.models().filter(|m| !m.starts_with("dall-e")) {
        let s = p.chat_cost(m, Tier::Standard, &u).unwrap();
        let b = p.chat_cost(m, Tier::Batch, &u).unwrap();
        assert_close(b, s / 2.0);
    }
    let uncached = p
        .chat_cost("gpt-4.1", Tier::Standard, &usage(10_000, None, 0, None))
        .unwrap();
    let cached = p
        .chat_cost(
            "gpt-4.1",
            Tier::Standard,
            &usage(10_000, Some(8_000), 0, None),
        )
        .unwrap();
    assert_close(uncached, 0.02);
    assert_close(cached, (2_000.0 * 2.0 + 8_000.0 * 0.5) / 1e6);
    // More cached tokens than input tokens cannot make the call cheaper than all cached.
    let odd = p
        .chat_cost("gpt-4.1", Tier::Standard, &usage(100, Some(500), 0, None))
        .unwrap();
    assert_close(odd, 100.0 * 0.5 / 1e6);
    // Reasoning tokens are part of the output tokens, not added to them.
    let r = p
        .chat_cost("o3", Tier::Standard, &usage(0, None, 1_000, Some(800)))
        .unwrap();
    assert_close(r, 0.008);
}

#[test]
fn snapshots_resolve_to_their_model() {
    let p = Pricing::builtin();
    assert_eq!(p.resolve("gpt-4o-mini-2024-07-18").unwrap(), "gpt-4o-mini");
    assert_eq!(p.resolve("gpt-4o-2024-08-06").unwrap(), "gpt-4o");
    assert_eq!(
        p.resolve("gpt-4.1-mini-2025-04-14").unwrap(),
        "gpt-4.1-mini"
    );
    assert_eq!(p.resolve("gpt-5-2025-08-07").unwrap(), "gpt-5");
    assert_eq!(p.resolve("o3-2025-04-16").unwrap(), "o3");
    assert_eq!(p.resolve("gpt-image-1-mini").unwrap(), "gpt-image-1-mini");
    assert_eq!(p.resolve("gpt-4o-0613").unwrap(), "gpt-4o");
    let u = usage(1_000, None, 1_000, None);
    assert_eq!(
        p.chat_cost("gpt-4o-mini-2024-07-18", Tier::Batch, &u)
            .unwrap(),
        p.chat_cost("gpt-4o-mini", Tier::Batch, &u).unwrap()
    );
    // Not a date: not a snapshot.
    for m in [
        "gpt-4o-audio-preview",
        "gpt-4o-mini-tts",
        "gpt-5-pro",
        "gpt-5.1",
        "o3-mini",
        "gpt-4o-2024-8-6",
        "gpt-4o-",
        "ft:gpt-4o-mini-2024-07-18:org::abc",
    ] {
        assert!(
            matches!(
                p.resolve(m),
                Err(crate::Error::Pricing(PricingError::UnknownModel { .. }))
            ),
            "{m}"
        );
    }
    // An entry of a snapshot's own wins over its model's.
    let own = Pricing::builtin().with_overrides(
        Pricing::from_toml_str(
            r#"[models."gpt-4o-2024-05-13".tokens]
               standard = { input = 5.0, cached_input = 5.0, output = 15.0 }"#,
        )
        .unwrap(),
    );
    assert_eq!(
        own.resolve("gpt-4o-2024-05-13").unwrap(),
        "gpt-4o-2024-05-13"
    );
    assert_eq!(own.resolve("gpt-4o-2024-08-06").unwrap(), "gpt-4o");
}

#[test]
fn pricing_errors_name_the_model_and_the_tier() {
    let p = Pricing::builtin();
    let u = usage(10, None, 10, None);
    let e = p.chat_cost("gpt-9", Tier::Standard, &u).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("`gpt-9`") && msg.contains("gpt-4o-mini"),
        "{msg}"
    );

    let e = p.chat_cost("gpt-4o-mini", Tier::Flex, &u).unwrap_err();
    assert!(matches!(
        e,
        crate::Error::Pricing(PricingError::TierNotOffered {
            tier: Tier::Flex,
            ..
        })
    ));
    // The crate's error, with the pricing error (model and tier) as its source.
    let inner = "model `gpt-4o-mini` is not offered on the flex tier (the price table has no \
                 flex price for it)";
    assert_eq!(e.to_string(), format!("pricing: {inner}"));
    let source = std::error::Error::source(&e).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some(inner));
    assert!(p.chat_cost("gpt-5-mini", Tier::Flex, &u).is_ok());

    let e = p.chat_cost("gpt-4o", Tier::Simulated, &u).unwrap_err();
    assert!(matches!(
        e,
        crate::Error::Pricing(PricingError::TierNotPriced {
            tier: Tier::Simulated
        })
    ));
    assert!(e.to_string().contains("simulated"), "{e}");

    let e = p.chat_cost("dall-e-3", Tier::Standard, &u).unwrap_err();
    assert!(
        matches!(
            e,
            crate::Error::Pricing(PricingError::NotTokenPriced { .. })
        ),
        "{e}"
    );
    let e = p
        .image_cost("gpt-4o", Tier::Standard, None, None, &Usage::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            crate::Error::Pricing(PricingError::NotImagePriced { .. })
        ),
        "{e}"
    );
    let e = p
        .image_cost("dall-e-3", Tier::Flex, None, None, &Usage::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            crate::Error::Pricing(PricingError::TierNotOffered { .. })
        ),
        "{e}"
    );
    let e = p
        .image_cost("dall-e-2", Tier::Standard, Some("2048x2048"), None, &u)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("standard 2048x2048") && msg.contains("standard 256x256"),
        "{msg}"
    );
}

#[test]
fn images_are_priced_per_image_or_by_their_tokens() {
    let p = Pricing::builtin();
    let none = Usage::default();
    // DALL·E: per image only, usage ignored.
    let d3 = |tier, size, quality| {
        p.image_cost("dall-e-3", tier, size, quality, &usage(50, None, 0, None))
            .unwrap()
    };
    assert_close(d3(Tier::Standard, None, None), 0.04);
    assert_close(d3(Tier::Standard, Some("1792x1024"), Some("hd")), 0.12);
    assert_close(d3(Tier::Batch, Some("1024x1792"), Some("standard")), 0.04);
    assert_close(d3(Tier::Standard, Some("auto"), Some("AUTO")), 0.04);
    assert_close(
        p.image_cost("dall-e-2", Tier::Batch, Some("512x512"), None, &none)
            .unwrap(),
        0.009,
    );
    // gpt-image-1 with no usage: the per-image table; `auto` is the table's default (high).
    let g = |tier, size, quality, u: &Usage| {
        p.image_cost("gpt-image-1", tier, size, quality, u).unwrap()
    };
    assert_close(
        g(Tier::Standard, Some("1024x1024"), Some("low"), &none),
        0.011,
    );
    assert_close(
        g(Tier::Standard, Some("1536x1024"), Some("medium"), &none),
        0.063,
    );
    assert_close(g(Tier::Standard, None, Some("auto"), &none), 0.167);
    assert_close(
        g(Tier::Batch, Some("1024x1536"), Some("high"), &none),
        0.125,
    );
    // gpt-image-1 with usage: the tokens are the bill. 100 prompt tokens at $5 and 4,160
    // image tokens (high, square) at $40 per 1M.
    let billed = usage(100, None, 4_160, None);
    assert_close(
        g(Tier::Standard, Some("1024x1024"), Some("high"), &billed),
        (100.0 * 5.0 + 4_160.0 * 40.0) / 1e6,
    );
    assert_close(
        g(Tier::Batch, Some("1024x1024"), Some("high"), &billed),
        (100.0 * 2.5 + 4_160.0 * 20.0) / 1e6,
    );
    // Prompt tokens but no output tokens: the per-image price plus the prompt.
    assert_close(
        g(
            Tier::Standard,
            Some("1024x1024"),
            Some("low"),
            &usage(1_000, None, 0, None),
        ),
        0.011 + 1_000.0 * 5.0 / 1e6,
    );
    assert_close(
        p.image_cost(
            "gpt-image-1-mini",
            Tier::Standard,
            None,
            Some("medium"),
            &none,
        )
        .unwrap(),
        0.011,
    );
    // A dated snapshot of an image model is priced as the model.
    assert_close(
        p.image_cost(
            "gpt-image-1-2025-04-23",
            Tier::Standard,
            None,
            Some("low"),
            &none,
        )
        .unwrap(),
        0.011,
    );
}

#[test]
fn user_files_override_whole_models_and_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        "# cheaper, and flex now\n\
         [models.\"gpt-4o-mini\".tokens]\n\
         standard = { input = 0.10, cached_input = 0.05, output = 0.40 }\n\
         flex = { input = 0.05, cached_input = 0.025, output = 0.20 }\n\
         [models.\"my-model\".tokens]\n\
         standard = { input = 1, cached_input = 1, output = 2 }\n",
    )
    .unwrap();
    let p = Pricing::load(&path).unwrap();
    let u = usage(1_000_000, None, 0, None);
    assert_close(
        p.chat_cost("gpt-4o-mini", Tier::Standard, &u).unwrap(),
        0.10,
    );
    assert_close(p.chat_cost("gpt-4o-mini", Tier::Flex, &u).unwrap(), 0.05);
    // The entry is replaced whole: the file gives no batch price.
    assert!(matches!(
        p.chat_cost("gpt-4o-mini", Tier::Batch, &u),
        Err(crate::Error::Pricing(PricingError::TierNotOffered { .. }))
    ));
    assert_close(
        p.chat_cost("my-model-2026-01-01", Tier::Standard, &u)
            .unwrap(),
        1.0,
    );
    assert_close(p.chat_cost("gpt-4o", Tier::Standard, &u).unwrap(), 2.5);

    let missing = dir.path().join("nope.toml");
    let e = Pricing::load(&missing).unwrap_err();
    assert!(
        matches!(e, crate::Error::Pricing(PricingError::Read { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("nope.toml"), "{e}");

    std::fs::write(
        &path,
        "[models.x.tokens]\nstandard = { input = -1, cached_input = 0, output = 0 }\n",
    )
    .unwrap();
    let e = Pricing::load(&path).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("prices.toml") && msg.contains("line 2"),
        "{msg}"
    );
}

/// Bad tables: (TOML, what the message must contain).
#[test]
fn bad_tables_are_refused_with_the_line_model_and_field() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[models.m.tokens]\nstandard = { input = 1, cached_input = 0.5, output = -2 }\n",
            &["line 2", "`m`", "tokens.standard.output", "-2"],
        ),
        (
            "[models.m.tokens]\nstandard = { input = 1, output = 2 }\n",
            &["line 2", "`m`", "missing `tokens.standard.cached_input`"],
        ),
        (
            "[models.m.tokens]\nstandard = { input = 1, cached_input = 1, output = 2 }\n\
             priority = { input = 2, cached_input = 2, output = 4 }\n",
            &["line 3", "`m`", "unknown tier `priority`"],
        ),
        (
            "[models.m.tokens]\nbatch = { input = 1, cached_input = 1, output = 2 }\n",
            &["line 1", "`m`", "missing `tokens.standard`"],
        ),
        (
            "[models.m.tokens]\nstandard = { input = nan, cached_input = 1, output = 2 }\n",
            &["line 2", "tokens.standard.input", "NaN"],
        ),
        (
            "[models.m.tokens]\nstandard = { input = 1, cached_input = 1, output = 2, extra = 3 }\n",
            &["line 2", "unknown field `extra`"],
        ),
        (
            "[models.m.tokens]\nstandard = { input = \"cheap\", cached_input = 1, output = 2 }\n",
            &["line 2", "invalid type"],
        ),
        ("[models.m]\n", &["line 1", "`m`", "no prices"]),
        ("models = 3\n", &["line 1", "invalid type"]),
        ("[models.m.tokens\n", &["line 1"]),
        (
            "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
             [models.img.images.standard]\nultra = { \"1024x1024\" = 1 }\n",
            &["line 5", "`img`", "unknown image quality `ultra`"],
        ),
        (
            "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
             [models.img.images.standard]\nlow = { \"big\" = 1 }\n",
            &["line 5", "image size `big`"],
        ),
        (
            "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
             [models.img.images.standard]\nlow = { \"1024x1024\" = -0.5 }\n",
            &["line 5", "images.standard.low.1024x1024", "-0.5"],
        ),
        (
            "[models.img]\ndefault_quality = \"low\"\n\
             [models.img.images.standard]\nlow = { \"1024x1024\" = 1 }\n",
            &["line 1", "`img`", "missing `default_size`"],
        ),
        (
            "[models.img]\ndefault_size = \"512x512\"\ndefault_quality = \"low\"\n\
             [models.img.images.standard]\nlow = { \"1024x1024\" = 1 }\n",
            &["line 2", "default_size `512x512` has no price"],
        ),
        (
            "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
             [models.img.images.flex]\nlow = { \"1024x1024\" = 1 }\n",
            &["line 1", "missing `images.standard`"],
        ),
        (
            "[models.img]\ndefault_size = \"1024x1024\"\n\
             [models.img.tokens]\nstandard = { input = 1, cached_input = 1, output = 2 }\n",
            &["line 2", "need image prices"],
        ),
    ];
    for (toml, needles) in cases {
        let e = Pricing::from_toml_str(toml).unwrap_err();
        let msg = e.to_string();
        for needle in *needles {
            assert!(msg.contains(needle), "{toml:?}: {msg:?} lacks {needle:?}");
        }
    }
    // Integers are prices too, and an empty file is an empty table.
    let p = Pricing::from_toml_str(
        "[models.m.tokens]\nstandard = { input = 1, cached_input = 0, output = 2 }\n",
    )
    .unwrap();
    assert_eq!(p.models().collect::<Vec<_>>(), ["m"]);
    assert_eq!(Pricing::from_toml_str("").unwrap().models().count(), 0);
}

fn session() -> (Pricing, CostTracker) {
    let p = Pricing::builtin();
    let mut t = CostTracker::new();
    let m = "gpt-4o-mini-2024-07-18";
    for _ in 0..3 {
        t.record(
            &p,
            Call::chat(
                Operation::Expand,
                Tier::Batch,
                m,
                usage(1_000, None, 500, None),
            ),
        );
    }
    t.record(
        &p,
        Call::chat(
            Operation::Critique,
            Tier::Standard,
            m,
            usage(2_000, Some(1_000), 100, None),
        ),
    );
    for _ in 0..2 {
        t.record(
            &p,
            Call::render(
                Tier::Batch,
                "gpt-image-1",
                usage(100, None, 272, None),
                Some("1024x1024".into()),
                Some("low".into()),
            ),
        );
    }
    t.record(
        &p,
        Call::chat(
            Operation::Judge,
            Tier::Flex,
            "gpt-5-mini",
            usage(10_000, None, 2_000, Some(1_500)),
        ),
    );
    (p, t)
}

#[test]
fn the_tracker_prices_each_call_and_the_report_adds_up() {
    let (p, mut t) = session();
    assert_eq!(t.len(), 7);
    let expand = (1_000.0 * 0.075 + 500.0 * 0.30) / 1e6;
    let critique = (1_000.0 * 0.15 + 1_000.0 * 0.075 + 100.0 * 0.60) / 1e6;
    let render = (100.0 * 2.5 + 272.0 * 20.0) / 1e6;
    let judge = (10_000.0 * 0.125 + 2_000.0 * 1.0) / 1e6;
    assert_close(t.calls()[0].cost, expand);
    assert_close(t.calls()[0].standard_cost, 2.0 * expand);
    assert_close(t.calls()[3].cost, critique);
    assert_close(t.calls()[3].standard_cost, critique);
    assert_close(t.calls()[4].cost, render);
    assert_close(t.calls()[6].standard_cost, 2.0 * judge);

    let r = t.report();
    let keys: Vec<_> = r.rows.iter().map(|r| (r.operation, r.tier)).collect();
    assert_eq!(
        keys,
        [
            (Operation::Expand, Tier::Batch),
            (Operation::Critique, Tier::Standard),
            (Operation::Render, Tier::Batch),
            (Operation::Judge, Tier::Flex),
        ]
    );
    let total_cost = 3.0 * expand + critique + 2.0 * render + judge;
    assert_close(r.total.cost, total_cost);
    assert_close(
        r.total.standard_cost,
        6.0 * expand + critique + 4.0 * render + 2.0 * judge,
    );
    assert_eq!(r.total.calls, 7);
    assert_eq!(r.total.input_tokens, 3_000 + 2_000 + 200 + 10_000);
    assert_eq!(r.total.cached_tokens, 1_000);
    assert_eq!(r.total.output_tokens, 1_500 + 100 + 544 + 2_000);
    let summed = r.rows.iter().fold(CostTotals::default(), |mut a, row| {
        a += row.totals;
        a
    });
    assert_eq!(summed.calls, r.total.calls);
    assert_close(summed.cost, r.total.cost);
    assert_eq!(r.total, t.totals());

    // The proof's claim: calls carried by batch cost at most half their all-standard cost.
    let batch = r.tier_totals(Tier::Batch);
    assert_eq!(batch, t.tier_totals(Tier::Batch));
    assert_eq!(batch.calls, 5);
    assert_close(batch.cost, 3.0 * expand + 2.0 * render);
    assert!(batch.cost <= 0.5 * batch.standard_cost + 1e-12);
    assert_close(batch.saving_percent().unwrap(), 50.0);
    let standard = r.tier_totals(Tier::Standard);
    assert_close(standard.saving(), 0.0);
    assert_eq!(r.operation_totals(Operation::Render).calls, 2);
    assert_eq!(r.tier_totals(Tier::Simulated), CostTotals::default());
    assert_eq!(CostTotals::default().saving_percent(), None);

    // A call the table has no price for on its tier is still counted: at the standard
    // price, with the reason; one whose model it does not know is counted at $0.
    let flex = usage(1_000, None, 100, None);
    let std_cost = p.chat_cost("gpt-4o", Tier::Standard, &flex).unwrap();
    let off = t.record(
        &p,
        Call::chat(Operation::Refine, Tier::Flex, "gpt-4o", flex),
    );
    assert_close(off.cost, std_cost);
    assert!(
        off.unpriced
            .as_deref()
            .unwrap()
            .contains("not offered on the flex tier")
    );
    let unknown = Call::chat(Operation::Refine, Tier::Batch, "my-model", flex).fell_back_from(None);
    assert_eq!(t.record(&p, unknown).cost, 0.0);
    assert_eq!(t.len(), 9);
    let r = t.report();
    assert_eq!((r.total.calls, r.total.unpriced), (9, 2));
    assert_close(r.total.cost, total_cost + std_cost);
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    let text = r.to_string();
    assert!(
        text.contains("note: model `gpt-4o` is not offered on the flex tier"),
        "{text}"
    );
    assert!(text.contains("no price for model `my-model`"), "{text}");
}

#[test]
fn the_tracker_round_trips_through_json() {
    let (_, t) = session();
    let json = serde_json::to_string(&t).unwrap();
    let back: CostTracker = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
    let first = &serde_json::to_value(&t).unwrap()["calls"][0];
    assert_eq!(first["operation"], "expand");
    assert_eq!(first["tier"], "batch");
    assert_eq!(first["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(first["usage"]["input_tokens"], 1_000);
    assert!(first.get("image").is_none());
    let render = &serde_json::to_value(&t).unwrap()["calls"][4];
    assert_eq!(render["image"]["quality"], "low");
    // Older or hand-written records may omit the optional usage fields.
    let minimal = r#"{"calls":[{"operation":"judge","tier":"standard","model":"gpt-4o",
        "usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3},
        "cost":0.5,"standard_cost":0.5}]}"#;
    let t: CostTracker = serde_json::from_str(minimal).unwrap();
    assert_eq!(t.calls()[0].call.usage.cached_tokens, None);
    let report = serde_json::to_value(t.report()).unwrap();
    assert_eq!(report["rows"][0]["calls"], 1);
    assert_eq!(report["rows"][0]["operation"], "judge");
    let back: CostReport = serde_json::from_value(report).unwrap();
    assert_eq!(back, t.report());
}

#[test]
fn the_report_displays_as_an_aligned_table() {
    let (_, t) = session();
    let text = t.report().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 4 + 2 + 1, "{text}");
    assert!(lines[0].starts_with("operation  tier"), "{text}");
    assert!(lines[0].ends_with("saving %"), "{text}");
    assert!(lines[1].starts_with("expand     batch"), "{text}");
    assert!(lines[1].ends_with("50.0%"), "{text}");
    assert!(lines[2].starts_with("critique   standard"), "{text}");
    assert!(lines[2].ends_with("0.0%"), "{text}");
    assert!(lines[5].chars().all(|c| c == '-'), "{text}");
    assert!(lines[6].starts_with("total"), "{text}");
    assert!(lines[6].contains("15,200"), "{text}");
    // The critique's 1,000 cached input tokens, at gpt-4o-mini's discount.
    assert!(
        lines[7].starts_with("prompt cache: 1,000 of 15,200 input tokens sent were cached"),
        "{text}"
    );
    // Right-aligned numeric columns: every row is as wide as the rule.
    let width = lines[5].len();
    for line in lines[..7].iter().filter(|l| !l.starts_with('-')) {
        assert_eq!(line.len(), width, "{line:?} in\n{text}");
        assert_eq!(*line, line.trim_end());
    }
    assert!(text.contains(&format!("${:.6}", t.totals().cost)), "{text}");

    let empty = CostTracker::new().report().to_string();
    assert_eq!(empty.lines().count(), 3, "{empty}");
    assert!(empty.lines().last().unwrap().ends_with('-'), "{empty}");
}

#[test]
fn numbers_are_grouped_and_dollars_signed() {
    assert_eq!(grouped(0), "0");
    assert_eq!(grouped(999), "999");
    assert_eq!(grouped(1_000), "1,000");
    assert_eq!(grouped(1_234_567), "1,234,567");
    assert_eq!(usd(0.5), "$0.500000");
    assert_eq!(usd(-0.25), "-$0.250000");
    assert!(is_snapshot_suffix("-2024-07-18"));
    assert!(is_snapshot_suffix("-0613"));
    assert!(!is_snapshot_suffix("-mini"));
    assert!(!is_snapshot_suffix("2024-07-18"));
    assert!(is_size("1024x1536") && !is_size("1024x") && !is_size("x1") && !is_size("1x2x3"));
}

#[test]
fn a_cached_answer_costs_nothing_and_says_what_it_saved() {
    let p = Pricing::builtin();
    let mut t = CostTracker::new();
    let u = usage(1_000_000, None, 1_000_000, None);
    let sent = Call::chat(Operation::Judge, Tier::Batch, "gpt-4o-mini", u);
    t.record(&p, sent.clone());
    let cached = t.record(&p, sent.clone().from_cache(true)).clone();
    assert_close(cached.cost, 0.0);
    assert_close(cached.cache_saved.unwrap(), 0.375); // what batch would have charged again
    assert_close(cached.standard_cost, 0.75);
    let report = t.report();
    // Calls made plus cached; the cost is only the call made.
    assert_eq!(report.total.calls, 2);
    assert_eq!(report.total.cached_calls, 1);
    assert_eq!(report.total.sent_calls(), 1);
    assert_close(report.total.cost, 0.375);
    assert_close(report.total.cache_saved, 0.375);
    // The cached row is its own, apart from the batch row.
    assert_eq!(report.rows.len(), 2, "{report}");
    assert_eq!(report.tier_totals(Tier::Batch).calls, 1);
    assert_eq!(report.cached_totals().calls, 1);
    assert_close(report.cached_totals().cost, 0.0);
    let text = report.to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("judge") && l.contains("cached")),
        "{text}"
    );
    assert!(
        text.contains(
            "cached: 1 of 2 calls answered from the request cache at $0 ($0.375000 not spent)"
        ),
        "{text}"
    );
    // It survives the session file.
    let back: CostTracker = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn the_report_says_what_openais_prompt_cache_saved() {
    let p = Pricing::builtin();
    let mut t = CostTracker::new();
    // gpt-4o-mini on batch: input $0.075, cached input $0.0375 per 1M.
    let u = usage(3_000_000, Some(2_000_000), 0, None);
    let c = t
        .record(
            &p,
            Call::chat(Operation::Judge, Tier::Batch, "gpt-4o-mini", u),
        )
        .clone();
    assert_close(
        c.cost,
        1_000_000.0 * 0.075 / 1e6 + 2_000_000.0 * 0.0375 / 1e6,
    );
    assert_close(
        c.prompt_cache_saved.unwrap(),
        2_000_000.0 * (0.075 - 0.0375) / 1e6,
    );
    // No cached token, no figure.
    let none = t
        .record(
            &p,
            Call::chat(
                Operation::Expand,
                Tier::Batch,
                "gpt-4o-mini",
                usage(10, None, 1, None),
            ),
        )
        .clone();
    assert_eq!(none.prompt_cache_saved, None);
    // A request-cache answer sent nothing: no prompt cache saving of its own.
    let replay = t
        .record(
            &p,
            Call::chat(Operation::Judge, Tier::Batch, "gpt-4o-mini", u).from_cache(true),
        )
        .clone();
    assert_eq!(replay.prompt_cache_saved, None);
    let report = t.report();
    assert_close(report.total.prompt_cache_saved, 0.075);
    let text = report.to_string();
    assert!(
        text.contains("prompt cache: 2,000,000 of 3,000,010 input tokens sent were cached by OpenAI, $0.075000 saved"),
        "{text}"
    );
}
