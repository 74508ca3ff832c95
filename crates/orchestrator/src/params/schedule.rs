//! Render schedules: the image quality (and size) each iteration renders at, read from
//! `low,low,high`, `low..high` or `low@1024x1024,high`; and the setting a render is made at.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Image qualities the price table knows (GPT image models, then DALL·E), plus `auto`.
pub const QUALITIES: [&str; 6] = ["low", "medium", "high", "auto", "standard", "hd"];

/// What one render is asked for: a quality and a size (`None`: the session's own, and failing
/// that the image model's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderSetting {
    /// `low`, `medium`, `high`… (`None`: the session's `image_quality`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// `WIDTHxHEIGHT` (`None`: the session's `image_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

impl RenderSetting {
    /// `quality` or `quality@size` as written in a schedule.
    pub fn label(&self) -> String {
        let q = self.quality.as_deref().unwrap_or("default");
        match &self.size {
            Some(s) => format!("{q}@{s}"),
            None => q.to_owned(),
        }
    }

    /// This setting with the gaps filled from `base` (the session's full-quality setting).
    pub fn or(&self, base: &RenderSetting) -> RenderSetting {
        RenderSetting {
            quality: self.quality.clone().or_else(|| base.quality.clone()),
            size: self.size.clone().or_else(|| base.size.clone()),
        }
    }
}

/// Reads a render schedule for `iterations` rounds: a comma list with one item per iteration
/// (a shorter list repeats its last item), or a ramp `from..to` over low, medium, high spread
/// evenly across the iterations. An item is a quality, optionally `@WIDTHxHEIGHT`.
pub fn parse_schedule(text: &str, iterations: u32) -> Result<Vec<RenderSetting>, Error> {
    let bad = |problem: String| Error::Param {
        name: "render_schedule",
        problem,
    };
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if let Some((from, to)) = t.split_once("..") {
        let ladder = ["low", "medium", "high"];
        let step = |q: &str| {
            ladder
                .iter()
                .position(|l| *l == q.trim().to_ascii_lowercase())
                .ok_or_else(|| {
                    bad(format!(
                        "'{q}' in the ramp '{t}' is not one of low, medium, high"
                    ))
                })
        };
        let (a, b) = (step(from)?, step(to)?);
        let n = iterations.max(1);
        return Ok((0..n)
            .map(|it| {
                let share = if n == 1 {
                    1.0
                } else {
                    f64::from(it) / f64::from(n - 1)
                };
                let at = a as f64 + (b as f64 - a as f64) * share;
                RenderSetting {
                    // `at` lies between two ladder indices (0-2).
                    quality: Some(ladder[(at.round() as usize).min(2)].to_owned()),
                    size: None,
                }
            })
            .collect());
    }
    let items: Vec<RenderSetting> = t
        .split(',')
        .map(|item| parse_item(item).map_err(|p| bad(format!("'{}': {p}", item.trim()))))
        .collect::<Result<_, _>>()?;
    check_schedule(&items, iterations)?;
    Ok(items)
}

fn parse_item(item: &str) -> Result<RenderSetting, String> {
    let (q, size) = match item.trim().split_once('@') {
        Some((q, s)) => (q.trim(), Some(s.trim())),
        None => (item.trim(), None),
    };
    if q.is_empty() {
        return Err("an item is empty".into());
    }
    Ok(RenderSetting {
        quality: Some(q.to_ascii_lowercase()),
        size: size.map(str::to_owned),
    })
}

/// Checks a schedule's items: known qualities, sizes `WIDTHxHEIGHT` or `auto`, at most one
/// item per iteration.
pub(crate) fn check_schedule(items: &[RenderSetting], iterations: u32) -> Result<(), Error> {
    let bad = |problem: String| {
        Err(Error::Param {
            name: "render_schedule",
            problem,
        })
    };
    if items.len() > iterations as usize {
        return bad(format!(
            "has {} items for {iterations} iterations (one per iteration at most; a shorter \
             list repeats its last)",
            items.len()
        ));
    }
    for (i, s) in items.iter().enumerate() {
        if let Some(q) = &s.quality
            && !QUALITIES.contains(&q.as_str())
        {
            return bad(format!(
                "item {}: quality '{q}' is not one of {}",
                i + 1,
                QUALITIES.join(", ")
            ));
        }
        if let Some(size) = &s.size
            && !valid_size(size)
        {
            return bad(format!(
                "item {}: size '{size}' is not WIDTHxHEIGHT (e.g. 1024x1024) or auto",
                i + 1
            ));
        }
    }
    Ok(())
}

fn valid_size(s: &str) -> bool {
    s == "auto"
        || s.split_once('x').is_some_and(|(w, h)| {
            [w, h]
                .iter()
                .all(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qualities(s: &[RenderSetting]) -> Vec<&str> {
        s.iter()
            .map(|r| r.quality.as_deref().unwrap_or("-"))
            .collect()
    }

    #[test]
    fn lists_ramps_and_sizes_read() {
        let s = parse_schedule("low,low,high", 3).unwrap();
        assert_eq!(qualities(&s), ["low", "low", "high"]);
        assert_eq!(
            qualities(&parse_schedule("low..high", 3).unwrap()),
            ["low", "medium", "high"]
        );
        assert_eq!(
            qualities(&parse_schedule("low..high", 5).unwrap()),
            ["low", "medium", "medium", "high", "high"]
        );
        assert_eq!(
            qualities(&parse_schedule("medium..medium", 2).unwrap()),
            ["medium", "medium"]
        );
        let s = parse_schedule(" Low@1024x1536 , high", 3).unwrap();
        assert_eq!(s[0].size.as_deref(), Some("1024x1536"));
        assert_eq!(s[0].label(), "low@1024x1536");
        assert!(parse_schedule("", 3).unwrap().is_empty());
    }

    #[test]
    fn bad_schedules_are_named() {
        let problem = |t: &str| match parse_schedule(t, 3) {
            Err(Error::Param { name, problem }) => {
                assert_eq!(name, "render_schedule");
                problem
            }
            other => panic!("{t}: {other:?}"),
        };
        assert!(problem("low,ultra").contains("'ultra' is not one of"));
        assert!(problem("low,low,low,high").contains("4 items for 3 iterations"));
        assert!(problem("low@big").contains("size 'big'"));
        assert!(problem("low,,high").contains("empty"));
        assert!(problem("low..best").contains("'best' in the ramp"));
    }
}
