//! `_include` and `_revinclude`, each included resource consent-checked.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
    /// The resources `_include` and `_revinclude` add to a page, each one consent-checked:
    /// first from the matches, then (`:iterate`) from what the previous round added, until a
    /// round adds nothing, [`MAX_ITERATE`] rounds or [`MAX_INCLUDED`] resources.
    pub(super) fn included(
        &self,
        s: &Session,
        purpose: &Purpose,
        q: &Query<'_>,
        page: &[Value],
        glass: &mut bool,
    ) -> Result<Vec<Value>, ServiceError> {
        let mut seen: BTreeSet<String> = page.iter().filter_map(ref_of).collect();
        let mut out: Vec<Value> = Vec::new();
        let mut from = 0;
        for round in 0..=MAX_ITERATE {
            let start = out.len();
            // What this round starts from: the matches, then what the last round added.
            let frontier: &[Value] = if round == 0 { page } else { &out[from..] };
            let mut wanted = Vec::new();
            for inc in q.include.iter().filter(|i| round == 0 || i.iterate) {
                for r in frontier
                    .iter()
                    .filter(|r| r["resourceType"] == inc.source.as_str())
                {
                    for reference in references(r, inc.param, inc.target.as_deref()) {
                        if seen.insert(reference.to_string()) {
                            wanted.push(reference.to_string());
                        }
                    }
                }
            }
            let targets: BTreeSet<String> = frontier.iter().filter_map(ref_of).collect();
            for reference in &wanted {
                if out.len() >= MAX_INCLUDED {
                    break;
                }
                if let Some(x) = self.read_visible(s, purpose, reference, glass) {
                    out.push(x);
                }
            }
            for inc in q.revinclude.iter().filter(|i| round == 0 || i.iterate) {
                self.revinclude(s, purpose, inc, &targets, &mut seen, &mut out, glass)?;
            }
            if out.len() == start || out.len() >= MAX_INCLUDED {
                break;
            }
            from = start;
        }
        Ok(out)
    }

    /// Adds the visible resources of `inc.source` that refer to one of `targets`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn revinclude(
        &self,
        s: &Session,
        purpose: &Purpose,
        inc: &Include,
        targets: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Value>,
        glass: &mut bool,
    ) -> Result<(), ServiceError> {
        if !(s.allows(&inc.source, 'r') || s.allows(&inc.source, 's')) {
            return Ok(());
        }
        // Every resource of the source type is a candidate: a reference need not follow
        // the patient compartment (a Provenance's target, a performer).
        for id in self.records.ids(&inc.source)? {
            if out.len() >= MAX_INCLUDED {
                break;
            }
            let key = format!("{}/{id}", inc.source);
            if seen.contains(&key) {
                continue;
            }
            let Ok(meta) = self.records.meta(&inc.source, &id, None) else {
                continue;
            };
            let Some(bg) = self.visible(s, purpose, &inc.source, &meta) else {
                continue;
            };
            let Ok(r) = self.records.read_version(&inc.source, &id, &meta) else {
                continue;
            };
            if references(&r, inc.param, inc.target.as_deref())
                .iter()
                .any(|x| targets.contains(*x))
            {
                seen.insert(key);
                *glass |= bg;
                out.push(r);
            }
        }
        Ok(())
    }
}
