//! Running a parsed search: the matches the caller may see, sorted, and the audit of what
//! a search discloses.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Service {
    /// Whether the caller may see a record (found by a search, or included or chained by
    /// one): `Some(break_glass)` if so. Deleted and erased records are never found.
    pub(crate) fn visible(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        meta: &VersionMeta,
    ) -> Option<bool> {
        if meta.deleted || meta.erased {
            return None;
        }
        let c = self.caller(s, purpose);
        let action = if s.allows(rt, 's') {
            Action::Search
        } else {
            Action::Read
        };
        let d = self.decide(&c, action, Some(&Record::of(rt, meta)), None);
        d.permitted().then(|| d.break_glass())
    }

    /// Records, in each patient's own access log, that a search returned some of her
    /// records: one audit event per patient other than `compartment` (the search's own event
    /// covers that one), marked break-glass if any of them was visible only by breaking the
    /// glass. Without it, a patient would not see that someone found her by a search across
    /// patients.
    pub(crate) fn audit_disclosed<'r>(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        compartment: Option<&str>,
        returned: impl Iterator<Item = (&'r str, &'r str)>,
    ) {
        let mut touched = Touched::new();
        for (t, id) in returned {
            let Ok(meta) = self.records.meta(t, id, None) else {
                continue;
            };
            let bg = self.visible(s, purpose, t, &meta).unwrap_or(false);
            for p in meta
                .patients
                .iter()
                .filter(|p| Some(p.as_str()) != compartment)
            {
                let e = touched.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 |= bg;
            }
        }
        let c = self.caller(s, purpose);
        self.audit_touched(&c, Interaction::SearchType, rt, &touched, |n| {
            format!("search-type: {n} of this patient's records returned")
        });
    }

    /// Reads a record the caller may see, for inclusion in a result.
    pub(super) fn read_visible(
        &self,
        s: &Session,
        purpose: &Purpose,
        reference: &str,
        glass: &mut bool,
    ) -> Option<Value> {
        let (rt, id) = reference.split_once('/')?;
        if !(s.allows(rt, 'r') || s.allows(rt, 's')) {
            return None;
        }
        let meta = self.records.meta(rt, id, None).ok()?;
        let bg = self.visible(s, purpose, rt, &meta)?;
        let r = self.records.read_version(rt, id, &meta).ok()?;
        *glass |= bg;
        Some(r)
    }

    pub(super) fn run(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        q: &Query<'_>,
        mut withheld: usize,
    ) -> Result<Found, ServiceError> {
        let candidates = match (&q.ids, &q.compartment) {
            (Some(ids), _) => ids.iter().map(|i| i.to_string()).collect(),
            (None, Some(c)) => self.records.patient_ids(c, rt)?,
            (None, None) => self.records.ids(rt)?,
        };
        let lu = SearchParam {
            kind: "date".into(),
            paths: vec![("meta.lastUpdated".into(), None)],
        };
        let mut hits = Vec::new();
        let mut glass = false;
        for id in candidates {
            let Ok(meta) = self.records.meta(rt, &id, None) else {
                continue;
            };
            if meta.deleted || meta.erased {
                continue;
            }
            let Some(bg) = self.visible(s, purpose, rt, &meta) else {
                withheld += 1;
                continue;
            };
            let Ok(r) = self.records.read_version(rt, &id, &meta) else {
                continue;
            };
            let mut ok = true;
            for v in &q.last_updated {
                ok &= matches(&r, &lu, None, v).map_err(bad)?;
            }
            for (p, m, v) in &q.filters {
                ok = ok && matches(&r, p, *m, v).map_err(bad)?;
            }
            for (p, refs) in &q.chains {
                ok = ok && references(&r, p, None).iter().any(|x| refs.contains(*x));
            }
            for ids in &q.has {
                ok = ok && ids.contains(&id);
            }
            if ok && !q.text.is_empty() {
                let narrative = narrative_text(&r);
                ok = q.text.iter().all(|alts| words_match(&narrative, alts));
            }
            if ok && !q.content.is_empty() {
                let mut all = String::new();
                strings_of(&r, &mut all);
                ok = q.content.iter().all(|alts| words_match(&all, alts));
            }
            if ok {
                glass |= bg;
                hits.push(r);
            }
        }
        if !q.sort.is_empty() {
            let keys: Vec<Vec<SortValue>> = hits
                .iter()
                .map(|r| {
                    q.sort
                        .iter()
                        .map(|(by, _)| match by {
                            SortBy::Id => SortValue::Text(r["id"].as_str().unwrap_or("").into()),
                            SortBy::LastUpdated => sort_value(r, &lu),
                            SortBy::Param(p) => sort_value(r, p),
                        })
                        .collect()
                })
                .collect();
            let mut order: Vec<usize> = (0..hits.len()).collect();
            order.sort_by(|&a, &b| {
                for (i, (_, desc)) in q.sort.iter().enumerate() {
                    let (x, y) = (&keys[a][i], &keys[b][i]);
                    let o = match (x, y) {
                        (SortValue::Missing, SortValue::Missing) => std::cmp::Ordering::Equal,
                        (SortValue::Missing, _) => std::cmp::Ordering::Greater,
                        (_, SortValue::Missing) => std::cmp::Ordering::Less,
                        _ => {
                            let o = x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal);
                            if *desc { o.reverse() } else { o }
                        }
                    };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            let mut slots: Vec<Option<Value>> = hits.into_iter().map(Some).collect();
            hits = order.into_iter().filter_map(|i| slots[i].take()).collect();
        }
        Ok(Found {
            hits,
            withheld,
            glass,
        })
    }
}
