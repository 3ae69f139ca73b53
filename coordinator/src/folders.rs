//! Folder mapping: which source folders go to which target folder, decided from both accounts'
//! listings and the user's folder rules.
//!
//! Pure: no I/O, no clock, no randomness. The same listings and rules always give the same
//! plan, in the same order, which is what lets a rerun find the folders an earlier run created.
//! It works on decoded [`FolderPath`]s only; the worker encodes them for the target server.
//!
//! # Rules, in order
//!
//! 1. Other namespaces (shared folders, other users) are skipped and reported.
//! 2. `include` / `exclude` regexes match the decoded source name with `/` separators; an empty
//!    `include` takes everything; `exclude` wins.
//! 3. Virtual folders (`\All`, `\Flagged`, `\Important`) are skipped unless `include_virtual`;
//!    an included one keeps its own name (appending into the target's virtual view would be
//!    meaningless).
//! 4. The target path: an explicit `maps` entry (exact decoded name); else INBOX → INBOX; else,
//!    with `automap`, a source with a role (by attribute, or a top-level folder with a common
//!    localized name) goes to the target folder with that role (by attribute, or a top-level
//!    folder with such a name); else the source path.
//! 5. The target's delimiter inside a component becomes `_`; on a flat target (no delimiter) the
//!    components are joined with `/`, an ordinary character there.
//! 6. Sources meant to meet (explicit map, role, INBOX; plus the one source whose own path it
//!    is) merge into one target folder, with a warning. Any other source that lands on a taken
//!    path gets ` (2)`, ` (3)`, … on its leaf, and its sub-folders follow it. Suffixes avoid
//!    every path the *source* listing produces but not paths that merely exist on the target,
//!    so that a rerun, seeing the folders the first run created, picks the same names.
//! 7. Every ancestor of a planned folder exists on the target or is planned (created empty).
//! 8. A source folder that holds no mail (`\Noselect`, e.g. Gmail's `[Gmail]`) is planned only
//!    when something lands in or below its target, or it is subscribed on its own: one whose
//!    children all go elsewhere or are skipped would be an empty stray folder on the target.
//!
//! Undecodable source names keep their literal text as path ([`MappingReason::Escaped`]). Target
//! folders with undecodable names are never matched: their decoded path is a guess.

use std::collections::{BTreeMap, HashMap, HashSet};

use mailferry_proto::report::{FolderMapping, MappingReason, SkippedFolder, Warning, WarningCode};
use mailferry_proto::task::{AccountListing, FolderListing, ListResult, SourceFolderRef};
use mailferry_proto::{FolderPath, FolderRole};

/// The user's folder rules (`--include`, `--exclude`, `--map`, `--no-automap`,
/// `--include-virtual`).
#[derive(Debug, Clone)]
pub struct FolderRules {
    /// Source folders to take (decoded, `/`-separated name); empty means all.
    pub include: Vec<regex::Regex>,
    /// Source folders to leave out; wins over `include`.
    pub exclude: Vec<regex::Regex>,
    /// Explicit source → target mappings, by exact decoded path.
    pub maps: Vec<(FolderPath, FolderPath)>,
    /// Map special-use folders (Sent, Trash, …) onto the target's folders of the same role.
    pub automap: bool,
    /// Copy virtual folders (`\All`, `\Flagged`, `\Important`) too.
    pub include_virtual: bool,
    /// Leave out source folders of these roles (`--exclude-folder-role`).
    pub exclude_roles: Vec<FolderRole>,
    /// `--regex-rename` rules, applied in order to the decoded target name (with `/`
    /// separators) after special-use mapping: the pattern, the replacement (`$1` groups), and
    /// whether every match is replaced (`g`) or the first.
    pub renames: Vec<(regex::Regex, String, bool)>,
}

impl Default for FolderRules {
    /// Everything, with automap, without virtual folders: what `migrate` does without options.
    fn default() -> Self {
        FolderRules {
            include: Vec::new(),
            exclude: Vec::new(),
            maps: Vec::new(),
            automap: true,
            include_virtual: false,
            exclude_roles: Vec::new(),
            renames: Vec::new(),
        }
    }
}

/// One target folder of the plan and the source folders whose mail lands in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFolder {
    /// Decoded target path.
    pub target: FolderPath,
    /// Raw name of the existing target folder, if it exists.
    pub target_raw: Option<String>,
    /// The source folders, in chain order: INBOX, then role folders (by attribute before by
    /// name), then by decoded path. Empty for a parent planned only so its children have one.
    pub sources: Vec<PlannedSource>,
    /// Whether any source is subscribed.
    pub subscribe: bool,
    /// Whether the target folder does not exist yet.
    pub create: bool,
}

/// One source folder of a planned target folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSource {
    /// The source folder (raw name and decoded path).
    pub folder: SourceFolderRef,
    /// Whether it can be selected; a non-selectable one has no mail to copy.
    pub selectable: bool,
    /// Its special-use role, by attribute or by name.
    pub role: Option<FolderRole>,
    /// Why it lands where it does.
    pub reason: MappingReason,
}

/// The folder plan of one mailbox pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPlan {
    /// Target folders: INBOX first, then by target path.
    pub folders: Vec<PlannedFolder>,
    /// One mapping per included source folder, INBOX first, then by source path.
    pub mappings: Vec<FolderMapping>,
    /// Source folders left out, with the reason.
    pub skipped: Vec<SkippedFolder>,
    /// Things the user should know about the mapping.
    pub warnings: Vec<Warning>,
    /// Source folders the server refused (STATUS answered `NO [NOPERM]` or the like): not
    /// migrated, and a failure of the pair. They are in `skipped` too.
    pub refused: Vec<SkippedFolder>,
}

/// Common localized names of special-use folders (RFC 6154 roles), for servers that do not
/// announce SPECIAL-USE. Matched case-insensitively against top-level names only. Order matters
/// on the target side: the first name found wins.
const ROLE_NAMES: &[(FolderRole, &[&str])] = &[
    (
        FolderRole::Sent,
        &[
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Sent-Mail",
            "Gesendete Elemente",
            "Gesendete Objekte",
            "Gesendet",
            "Éléments envoyés",
            "Envoyés",
            "Messages envoyés",
            "Elementos enviados",
            "Enviados",
            "Posta inviata",
            "Inviati",
            "Verzonden items",
            "Verzonden",
            "Skickat",
            "Skickade objekt",
            "Sendt",
            "Sendte elementer",
            "Lähetetyt",
            "Wysłane",
            "Odeslaná pošta",
            "Itens enviados",
        ],
    ),
    (
        FolderRole::Trash,
        &[
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Deleted",
            "Gelöschte Elemente",
            "Gelöschte Objekte",
            "Papierkorb",
            "Corbeille",
            "Éléments supprimés",
            "Elementos eliminados",
            "Papelera",
            "Cestino",
            "Posta eliminata",
            "Verwijderde items",
            "Prullenbak",
            "Bin",
            "Papperskorgen",
            "Borttaget",
            "Kosz",
            "Lixeira",
            "Itens excluídos",
        ],
    ),
    (
        FolderRole::Junk,
        &[
            "Junk",
            "Junk E-mail",
            "Junk Email",
            "Junk Mail",
            "Spam",
            "Junk-E-Mail",
            "Bulk Mail",
            "Courrier indésirable",
            "Correo no deseado",
            "Posta indesiderata",
            "Ongewenste e-mail",
            "Skräppost",
            "Lixo eletrônico",
        ],
    ),
    (
        FolderRole::Drafts,
        &[
            "Drafts",
            "Entwürfe",
            "Brouillons",
            "Borradores",
            "Bozze",
            "Concepten",
            "Utkast",
            "Kladder",
            "Rascunhos",
        ],
    ),
    (
        FolderRole::Archive,
        &[
            "Archive", "Archives", "Archiv", "Archivio", "Archief", "Arkiv", "Archivo",
        ],
    ),
];

/// The role a top-level folder name suggests, if any.
fn role_by_name(path: &FolderPath) -> Option<FolderRole> {
    let [name] = path.0.as_slice() else {
        return None;
    };
    let name = name.to_lowercase();
    ROLE_NAMES
        .iter()
        .find(|(_, names)| names.iter().any(|n| n.to_lowercase() == name))
        .map(|(role, _)| *role)
}

/// The role a LIST reply announces, from the listing's role or its attributes.
fn role_by_attribute(f: &FolderListing) -> Option<FolderRole> {
    f.role.or_else(|| {
        f.attributes
            .iter()
            .find_map(|a| FolderRole::from_attribute(a))
    })
}

/// INBOX first, then by path: the order of every list in the plan.
fn order_key(path: &FolderPath) -> (bool, &FolderPath) {
    (!path.is_inbox(), path)
}

/// The target folder of each non-virtual role the target has.
fn target_roles(target: &AccountListing) -> HashMap<FolderRole, FolderPath> {
    let mut folders: Vec<&FolderListing> = target
        .folders
        .iter()
        .filter(|f| f.decode_error.is_none() && !f.path.is_inbox())
        .collect();
    // Selectable folders first: a \Noselect folder cannot take mail.
    folders.sort_by(|a, b| {
        (!a.selectable, order_key(&a.path)).cmp(&(!b.selectable, order_key(&b.path)))
    });
    let mut roles = HashMap::new();
    for f in &folders {
        if let Some(role) = role_by_attribute(f).filter(|r| !r.is_virtual()) {
            roles.entry(role).or_insert_with(|| f.path.clone());
        }
    }
    for (role, names) in ROLE_NAMES {
        if roles.contains_key(role) {
            continue;
        }
        let found = names.iter().find_map(|n| {
            let n = n.to_lowercase();
            folders
                .iter()
                .find(|f| f.path.0.len() == 1 && f.path.leaf().to_lowercase() == n)
        });
        if let Some(f) = found {
            roles.insert(*role, f.path.clone());
        }
    }
    roles
}

/// A source folder on its way to a target.
#[derive(Debug, Clone)]
struct Candidate<'a> {
    folder: &'a FolderListing,
    role: Option<FolderRole>,
    role_by_attribute: bool,
    target: FolderPath,
    reason: MappingReason,
    /// The target was chosen on purpose (explicit map, role, INBOX): sources sharing it merge.
    intentional: bool,
}

fn warn(plan: &mut FolderPlan, code: WarningCode, folder: Option<String>, message: String) {
    plan.warnings.push(Warning {
        code,
        folder,
        message,
    });
}

fn skip(plan: &mut FolderPlan, name: String, reason: &str) {
    plan.skipped.push(SkippedFolder {
        name,
        reason: reason.to_owned(),
    });
}

/// Maps every source folder of `list` onto the target according to `rules` (see the module
/// documentation for the rules and their order).
pub fn map_folders(list: &ListResult, rules: &FolderRules) -> FolderPlan {
    let mut plan = FolderPlan::default();
    skip_other_namespaces(&list.source, &mut plan);
    let roles = target_roles(&list.target);
    let mut sources: Vec<&FolderListing> = list.source.folders.iter().collect();
    sources.sort_by(|a, b| (order_key(&a.path), &a.raw).cmp(&(order_key(&b.path), &b.raw)));
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for f in sources {
        if let Some(c) = choose_target(f, rules, &roles, list.target.delimiter, &mut plan) {
            candidates.push(c);
        }
    }
    for (src, _) in &rules.maps {
        if !list.source.folders.iter().any(|f| f.path == *src) {
            let message =
                format!("--map names source folder \"{src}\", which does not exist; ignored");
            warn(
                &mut plan,
                WarningCode::Other,
                Some(src.display_slash()),
                message,
            );
        }
    }
    resolve_collisions(&mut candidates, &mut plan);
    drop_empty_containers(&mut candidates, &mut plan);
    build_folders(candidates, &list.target, &mut plan);
    plan
}

/// Applies the `--regex-rename` rules in order. INBOX stays INBOX. A renamed target was chosen
/// by the user, so sources renamed onto one folder merge (like `--map`).
fn rename(
    target: FolderPath,
    reason: MappingReason,
    intentional: bool,
    rules: &FolderRules,
) -> (FolderPath, MappingReason, bool) {
    if target.is_inbox() || rules.renames.is_empty() {
        return (target, reason, intentional);
    }
    let before = target.display_slash();
    let mut name = before.clone();
    for (re, replacement, all) in &rules.renames {
        name = if *all {
            re.replace_all(&name, replacement.as_str()).into_owned()
        } else {
            re.replace(&name, replacement.as_str()).into_owned()
        };
    }
    // An empty name or empty components cannot be a folder: keep the name the rules started from.
    if name == before || name.is_empty() || name.split('/').any(str::is_empty) {
        return (target, reason, intentional);
    }
    (FolderPath::from_slash(&name), MappingReason::Renamed, true)
}

fn skip_other_namespaces(source: &AccountListing, plan: &mut FolderPlan) {
    let mut names: Vec<&String> = source.other_namespace_folders.iter().collect();
    names.sort();
    for name in &names {
        skip(
            plan,
            (*name).clone(),
            "belongs to another namespace (shared or another user's folder)",
        );
    }
    if !names.is_empty() {
        let message = format!(
            "{} folder(s) of other namespaces (shared folders, other users' folders) were left out",
            names.len()
        );
        warn(plan, WarningCode::OtherNamespaceSkipped, None, message);
    }
}

/// Applies filters and rules 3–5 to one source folder; `None` when it is skipped.
fn choose_target<'a>(
    f: &'a FolderListing,
    rules: &FolderRules,
    roles: &HashMap<FolderRole, FolderPath>,
    target_delimiter: Option<char>,
    plan: &mut FolderPlan,
) -> Option<Candidate<'a>> {
    let display = f.path.display_slash();
    if let Some(u) = &f.unavailable {
        // Issue 10: one folder the server will not report on is skipped; the others go on.
        skip(plan, display.clone(), &u.reason);
        if u.vanished {
            let message = format!(
                "source folder \"{display}\" was deleted during the run and was skipped ({})",
                u.reason
            );
            warn(plan, WarningCode::FolderVanished, Some(display), message);
        } else {
            plan.refused.push(SkippedFolder {
                name: display,
                reason: u.reason.clone(),
            });
        }
        return None;
    }
    if !rules.include.is_empty() && !rules.include.iter().any(|r| r.is_match(&display)) {
        skip(plan, display, "not matched by any --include");
        return None;
    }
    if rules.exclude.iter().any(|r| r.is_match(&display)) {
        skip(plan, display, "matched by --exclude");
        return None;
    }
    let attr_role = role_by_attribute(f);
    let role = attr_role.or_else(|| role_by_name(&f.path));
    if let Some(r) = role.filter(|r| rules.exclude_roles.contains(r)) {
        skip(
            plan,
            display,
            &format!("its role ({r:?}) is left out by --exclude-folder-role"),
        );
        return None;
    }
    if let Some(r) = role.filter(|r| r.is_virtual() && !rules.include_virtual) {
        skip(
            plan,
            display.clone(),
            "virtual folder (a view of other folders' mail)",
        );
        let message = format!(
            "virtual folder \"{display}\" ({r:?}) was skipped; its mail is in other folders"
        );
        warn(
            plan,
            WarningCode::VirtualFolderSkipped,
            Some(display),
            message,
        );
        return None;
    }
    let explicit = rules
        .maps
        .iter()
        .find(|(src, _)| *src == f.path)
        .map(|(_, dst)| dst.clone());
    let by_role = role
        .filter(|r| rules.automap && !r.is_virtual())
        .and_then(|r| roles.get(&r));
    let (target, reason, intentional) = if let Some(dst) = explicit {
        (dst.normalise_inbox(), MappingReason::Explicit, true)
    } else if f.path.is_inbox() {
        (FolderPath::inbox(), MappingReason::Same, true)
    } else if let Some(t) = by_role {
        let reason = if *t == f.path {
            MappingReason::Same
        } else {
            MappingReason::SpecialUse
        };
        (t.clone(), reason, true)
    } else if f.decode_error.is_some() {
        (f.path.clone(), MappingReason::Escaped, false)
    } else {
        (f.path.clone(), MappingReason::Same, false)
    };
    if let Some(err) = &f.decode_error {
        let message = format!(
            "source folder name {:?} is not valid modified UTF-7 ({err}); migrated under its literal text",
            f.raw
        );
        warn(
            plan,
            WarningCode::UndecodableName,
            Some(display.clone()),
            message,
        );
    }
    let (target, mut reason, intentional) = rename(target, reason, intentional, rules);
    let (target, replaced) = fit_to_delimiter(target, target_delimiter);
    if replaced {
        if reason == MappingReason::Same {
            reason = MappingReason::DelimiterReplaced;
        }
        let message = match target_delimiter {
            Some(d) => format!(
                "source folder \"{display}\" contains the target's delimiter {d:?}; it becomes \"{target}\""
            ),
            None => format!(
                "the target has no folder hierarchy; source folder \"{display}\" becomes \"{target}\""
            ),
        };
        warn(plan, WarningCode::DelimiterReplaced, Some(display), message);
    }
    Some(Candidate {
        folder: f,
        role,
        role_by_attribute: attr_role.is_some(),
        target,
        reason,
        intentional,
    })
}

/// Makes a path spellable on the target: the delimiter inside a component becomes `_`; a flat
/// target gets one component. Returns whether anything changed.
fn fit_to_delimiter(path: FolderPath, delimiter: Option<char>) -> (FolderPath, bool) {
    match delimiter {
        Some(d) => {
            let changed = path.0.iter().any(|c| c.contains(d));
            let parts = path.0.into_iter().map(|c| c.replace(d, "_")).collect();
            (FolderPath(parts), changed)
        }
        None if path.0.len() > 1 => (FolderPath(vec![path.display_slash()]), true),
        None => (path, false),
    }
}

fn is_strict_prefix(prefix: &FolderPath, path: &FolderPath) -> bool {
    prefix.0.len() < path.0.len() && path.0.starts_with(&prefix.0)
}

/// Rule 6: sources landing on one path either merge or, when they meet by accident, all but one
/// get a numbered leaf. Works depth by depth so a renamed folder's sub-folders can follow it.
fn resolve_collisions(cands: &mut [Candidate<'_>], plan: &mut FolderPlan) {
    let mut taken: HashSet<FolderPath> = cands.iter().map(|c| c.target.clone()).collect();
    // (source path, old target, new target) of each renamed folder.
    let mut renames: Vec<(FolderPath, FolderPath, FolderPath)> = Vec::new();
    let max_depth = cands.iter().map(|c| c.target.0.len()).max().unwrap_or(0);
    for depth in 1..=max_depth {
        for c in cands
            .iter_mut()
            .filter(|c| c.target.0.len() == depth && !c.intentional)
        {
            let ancestor = renames
                .iter()
                .filter(|(s, old, _)| {
                    is_strict_prefix(s, &c.folder.path) && is_strict_prefix(old, &c.target)
                })
                .max_by_key(|(s, _, _)| s.0.len());
            if let Some((_, old, new)) = ancestor {
                let rest = c.target.0.get(old.0.len()..).unwrap_or_default();
                c.target = FolderPath([new.0.as_slice(), rest].concat());
                taken.insert(c.target.clone());
            }
        }
        let mut groups: BTreeMap<FolderPath, Vec<usize>> = BTreeMap::new();
        for (i, c) in cands
            .iter()
            .enumerate()
            .filter(|(_, c)| c.target.0.len() == depth)
        {
            groups.entry(c.target.clone()).or_default().push(i);
        }
        for (target, members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
            let keep = keepers(cands, &target, &members);
            for &i in members.iter().filter(|i| !keep.contains(i)) {
                let Some(c) = cands.get_mut(i) else { continue };
                let new = numbered(&target, &taken);
                taken.insert(new.clone());
                let code = match c.reason {
                    MappingReason::DelimiterReplaced => WarningCode::DelimiterReplaced,
                    MappingReason::Escaped => WarningCode::UndecodableName,
                    _ => WarningCode::Other,
                };
                let display = c.folder.path.display_slash();
                let message = format!(
                    "source folder \"{display}\" would land in \"{target}\" like another source folder; it goes to \"{new}\" instead"
                );
                warn(plan, code, Some(display), message);
                renames.push((c.folder.path.clone(), target.clone(), new.clone()));
                c.target = new;
            }
        }
    }
}

/// Rule 8: leaves out each source folder that holds no mail, is not subscribed, and has no
/// other planned folder at or below its target. Deepest first, so a chain of such folders
/// (`A`, `A/B`, neither selectable) goes as a whole.
fn drop_empty_containers(cands: &mut Vec<Candidate<'_>>, plan: &mut FolderPlan) {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cands[i].target.0.len()));
    let mut dropped = vec![false; cands.len()];
    for i in order {
        let c = &cands[i];
        if c.folder.selectable || c.folder.subscribed {
            continue;
        }
        let needed = cands.iter().enumerate().any(|(j, o)| {
            j != i
                && !dropped[j]
                && (o.target == c.target || is_strict_prefix(&c.target, &o.target))
        });
        if !needed {
            dropped[i] = true;
            skip(
                plan,
                c.folder.path.display_slash(),
                "it holds no mail (the server lists it \\Noselect), is not subscribed, and nothing is copied into folders below it",
            );
        }
    }
    let mut keep = dropped.iter().map(|d| !d);
    cands.retain(|_| keep.next().unwrap_or(true));
}

/// Which members of a collision group keep the path: those that meet on purpose, plus the one
/// whose own path it is; if there are none of either, the first in source order.
fn keepers(cands: &[Candidate<'_>], target: &FolderPath, members: &[usize]) -> Vec<usize> {
    let mut keep: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| cands.get(i).is_some_and(|c| c.intentional))
        .collect();
    let owner = members.iter().copied().find(|&i| {
        cands
            .get(i)
            .is_some_and(|c| !c.intentional && c.folder.path == *target)
    });
    match owner {
        Some(o) => keep.push(o),
        None if keep.is_empty() => keep.extend(members.first().copied()),
        None => {}
    }
    keep
}

/// `target` with ` (2)`, ` (3)`, … appended to its leaf: the first not in `taken`.
fn numbered(target: &FolderPath, taken: &HashSet<FolderPath>) -> FolderPath {
    let mut n = 2u64;
    loop {
        let mut parts = target.0.clone();
        if let Some(leaf) = parts.last_mut() {
            leaf.push_str(&format!(" ({n})"));
        }
        let candidate = FolderPath(parts);
        if !taken.contains(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// Existing target folders by decoded path (undecodable names left out; the real INBOX wins
/// over a folder that merely decodes to `INBOX`, such as `INBOX.INBOX` under an `INBOX.` prefix).
fn existing_targets(target: &AccountListing) -> HashMap<FolderPath, &FolderListing> {
    let mut by_path: HashMap<FolderPath, &FolderListing> = HashMap::new();
    for f in target.folders.iter().filter(|f| f.decode_error.is_none()) {
        let path = f.path.clone().normalise_inbox();
        let real_inbox = path.is_inbox() && f.raw.eq_ignore_ascii_case("INBOX");
        if real_inbox || !by_path.contains_key(&path) {
            by_path.insert(path, f);
        }
    }
    by_path
}

/// Chain order within one target folder: INBOX, role by attribute, role by name, then by path.
fn chain_key<'c>(c: &'c Candidate<'_>) -> (bool, u8, &'c FolderPath, &'c str) {
    let rank = match (c.role.is_some(), c.role_by_attribute) {
        (true, true) => 0,
        (true, false) => 1,
        _ => 2,
    };
    (
        !c.folder.path.is_inbox(),
        rank,
        &c.folder.path,
        &c.folder.raw,
    )
}

fn build_folders(mut cands: Vec<Candidate<'_>>, target: &AccountListing, plan: &mut FolderPlan) {
    let existing = existing_targets(target);
    let exists = |p: &FolderPath| p.is_inbox() || existing.contains_key(p);
    let raw_of = |p: &FolderPath| match existing.get(p) {
        Some(f) => Some(f.raw.clone()),
        None => p.is_inbox().then(|| "INBOX".to_owned()),
    };

    let mut by_source: Vec<&Candidate<'_>> = cands.iter().collect();
    by_source.sort_by(|a, b| {
        (order_key(&a.folder.path), &a.folder.raw).cmp(&(order_key(&b.folder.path), &b.folder.raw))
    });
    plan.mappings = by_source
        .iter()
        .map(|c| FolderMapping {
            source: c.folder.path.display_slash(),
            target: c.target.display_slash(),
            role: c.role,
            reason: c.reason,
            target_exists: exists(&c.target),
        })
        .collect();

    cands.sort_by(|a, b| chain_key(a).cmp(&chain_key(b)));
    let mut groups: BTreeMap<(bool, FolderPath), Vec<Candidate<'_>>> = BTreeMap::new();
    for c in cands {
        groups
            .entry((!c.target.is_inbox(), c.target.clone()))
            .or_default()
            .push(c);
    }
    let mut folders: Vec<PlannedFolder> = Vec::new();
    for ((_, path), members) in groups {
        if members.len() > 1 {
            let names: Vec<String> = members
                .iter()
                .map(|c| format!("\"{}\"", c.folder.path))
                .collect();
            let message = format!("source folders {} all go to \"{path}\"", names.join(", "));
            warn(
                plan,
                WarningCode::FoldersMerged,
                Some(path.display_slash()),
                message,
            );
        }
        let sources: Vec<PlannedSource> = members
            .iter()
            .map(|c| PlannedSource {
                folder: SourceFolderRef {
                    raw: c.folder.raw.clone(),
                    path: c.folder.path.clone(),
                },
                selectable: c.folder.selectable,
                role: c.role,
                reason: c.reason,
            })
            .collect();
        folders.push(PlannedFolder {
            target_raw: raw_of(&path),
            create: !exists(&path),
            subscribe: members.iter().any(|c| c.folder.subscribed),
            sources,
            target: path,
        });
    }
    add_missing_parents(&mut folders, &exists);
    folders.sort_by(|a, b| order_key(&a.target).cmp(&order_key(&b.target)));
    plan.folders = folders;
}

/// Rule 7: plans every ancestor that neither exists nor is planned, as an empty folder.
fn add_missing_parents(folders: &mut Vec<PlannedFolder>, exists: &impl Fn(&FolderPath) -> bool) {
    let mut planned: HashSet<FolderPath> = folders.iter().map(|f| f.target.clone()).collect();
    let mut missing: Vec<FolderPath> = Vec::new();
    for f in folders.iter() {
        let mut parent = f.target.parent();
        while let Some(p) = parent {
            if !exists(&p) && planned.insert(p.clone()) {
                missing.push(p.clone());
            }
            parent = p.parent();
        }
    }
    folders.extend(missing.into_iter().map(|target| PlannedFolder {
        target,
        target_raw: None,
        sources: Vec::new(),
        subscribe: false,
        create: true,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailferry_proto::task::AccountListing;

    /// A folder listed with delimiter `delim`, named by its decoded `/`-separated path.
    fn f(path: &str, delim: char) -> FolderListing {
        let path = FolderPath::from_slash(path);
        FolderListing {
            raw: path.0.join(&delim.to_string()),
            path,
            decode_error: None,
            delimiter: Some(delim),
            attributes: Vec::new(),
            role: None,
            selectable: true,
            subscribed: true,
            status: None,
            sizes: None,
            unavailable: None,
        }
    }

    fn with_role(mut l: FolderListing, attr: &str) -> FolderListing {
        l.attributes.push(attr.to_owned());
        l.role = FolderRole::from_attribute(attr);
        l
    }

    fn account(delim: Option<char>, folders: Vec<FolderListing>) -> AccountListing {
        AccountListing {
            capabilities: Vec::new(),
            personal_prefix: String::new(),
            delimiter: delim,
            folders,
            other_namespace_folders: Vec::new(),
            quota: None,
            append_limit: None,
        }
    }

    fn src(paths: &[&str]) -> AccountListing {
        account(Some('/'), paths.iter().map(|p| f(p, '/')).collect())
    }

    fn dst(paths: &[&str]) -> AccountListing {
        account(Some('.'), paths.iter().map(|p| f(p, '.')).collect())
    }

    fn list(source: AccountListing, target: AccountListing) -> ListResult {
        ListResult { source, target }
    }

    fn re(s: &str) -> regex::Regex {
        regex::Regex::new(s).expect("test regex")
    }

    fn p(s: &str) -> FolderPath {
        FolderPath::from_slash(s)
    }

    /// (source, target) display names of the mappings.
    fn pairs(plan: &FolderPlan) -> Vec<(String, String)> {
        plan.mappings
            .iter()
            .map(|m| (m.source.clone(), m.target.clone()))
            .collect()
    }

    fn mapping<'a>(plan: &'a FolderPlan, source: &str) -> &'a FolderMapping {
        plan.mappings
            .iter()
            .find(|m| m.source == source)
            .expect("mapping exists")
    }

    fn folder<'a>(plan: &'a FolderPlan, target: &str) -> &'a PlannedFolder {
        plan.folders
            .iter()
            .find(|f| f.target == p(target))
            .expect("planned folder exists")
    }

    fn codes(plan: &FolderPlan) -> Vec<WarningCode> {
        plan.warnings.iter().map(|w| w.code).collect()
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn same_names_map_to_themselves_in_a_fixed_order() {
        let plan = map_folders(
            &list(
                src(&["Work", "INBOX", "Archive/2019", "Archive", "Zeta"]),
                dst(&["INBOX", "Archive"]),
            ),
            &FolderRules::default(),
        );
        let targets: Vec<String> = plan
            .folders
            .iter()
            .map(|f| f.target.display_slash())
            .collect();
        assert_eq!(
            targets,
            ["INBOX", "Archive", "Archive/2019", "Work", "Zeta"]
        );
        assert_eq!(
            pairs(&plan),
            owned(&[
                ("INBOX", "INBOX"),
                ("Archive", "Archive"),
                ("Archive/2019", "Archive/2019"),
                ("Work", "Work"),
                ("Zeta", "Zeta")
            ])
        );
        assert!(
            plan.mappings
                .iter()
                .all(|m| m.reason == MappingReason::Same)
        );
        assert_eq!(
            folder(&plan, "Archive").target_raw.as_deref(),
            Some("Archive")
        );
        assert!(!folder(&plan, "Archive").create);
        assert!(folder(&plan, "Work").create);
        assert_eq!(folder(&plan, "Work").target_raw, None);
        assert!(mapping(&plan, "Archive").target_exists);
        assert!(!mapping(&plan, "Work").target_exists);
        assert!(plan.warnings.is_empty() && plan.skipped.is_empty());
    }

    #[test]
    fn include_and_exclude_filter_by_slash_name() {
        // (include, exclude, expected sources kept)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&[], &[], &["INBOX", "Archive", "Archive/2019", "Work"]),
            (&["^Archive"], &[], &["Archive", "Archive/2019"]),
            (&[], &["^Archive/"], &["INBOX", "Archive", "Work"]),
            // Exclude wins over include.
            (&["^Archive"], &["2019$"], &["Archive"]),
            (&["^INBOX$", "^Work$"], &[], &["INBOX", "Work"]),
        ];
        for (include, exclude, kept) in cases {
            let rules = FolderRules {
                include: include.iter().map(|s| re(s)).collect(),
                exclude: exclude.iter().map(|s| re(s)).collect(),
                ..FolderRules::default()
            };
            let plan = map_folders(
                &list(
                    src(&["INBOX", "Archive", "Archive/2019", "Work"]),
                    dst(&["INBOX"]),
                ),
                &rules,
            );
            let got: Vec<&str> = plan.mappings.iter().map(|m| m.source.as_str()).collect();
            assert_eq!(got, *kept, "include {include:?} exclude {exclude:?}");
            assert_eq!(plan.skipped.len(), 4 - kept.len());
        }
    }

    #[test]
    fn virtual_folders_are_skipped_unless_asked_for() {
        let source = account(
            Some('/'),
            vec![
                f("INBOX", '/'),
                with_role(f("[Gmail]/All Mail", '/'), "\\All"),
                with_role(f("[Gmail]/Starred", '/'), "\\Flagged"),
            ],
        );
        let target = account(
            Some('/'),
            vec![f("INBOX", '/'), with_role(f("All", '/'), "\\All")],
        );
        let plan = map_folders(
            &list(source.clone(), target.clone()),
            &FolderRules::default(),
        );
        assert_eq!(pairs(&plan), owned(&[("INBOX", "INBOX")]));
        assert_eq!(plan.skipped.len(), 2);
        assert_eq!(
            codes(&plan),
            [
                WarningCode::VirtualFolderSkipped,
                WarningCode::VirtualFolderSkipped
            ]
        );

        let rules = FolderRules {
            include_virtual: true,
            ..FolderRules::default()
        };
        let plan = map_folders(&list(source, target), &rules);
        // Included virtual folders keep their name: never appended into the target's own view.
        assert_eq!(
            pairs(&plan),
            owned(&[
                ("INBOX", "INBOX"),
                ("[Gmail]/All Mail", "[Gmail]/All Mail"),
                ("[Gmail]/Starred", "[Gmail]/Starred")
            ])
        );
        assert_eq!(
            mapping(&plan, "[Gmail]/All Mail").role,
            Some(FolderRole::All)
        );
        // Its parent is planned so it can be created.
        assert!(folder(&plan, "[Gmail]").create && folder(&plan, "[Gmail]").sources.is_empty());
    }

    #[test]
    fn an_empty_container_is_planned_only_for_something_below_it_or_its_subscription() {
        let noselect = |path: &str, subscribed: bool| {
            let mut l = f(path, '/');
            l.selectable = false;
            l.subscribed = subscribed;
            l.attributes.push("\\Noselect".into());
            l
        };
        let gmail = |parent_subscribed: bool, label: Option<&str>| {
            let mut folders = vec![
                f("INBOX", '/'),
                noselect("[Gmail]", parent_subscribed),
                with_role(f("[Gmail]/Sent Mail", '/'), "\\Sent"),
                with_role(f("[Gmail]/All Mail", '/'), "\\All"),
                with_role(f("[Gmail]/Trash", '/'), "\\Trash"),
                noselect("[Gmail]/Empty", false),
            ];
            folders.extend(label.map(|l| f(l, '/')));
            account(Some('/'), folders)
        };
        let target = || dst(&["INBOX", "Sent", "Trash"]);
        let targets = |plan: &FolderPlan| -> Vec<String> {
            plan.folders
                .iter()
                .map(|f| f.target.display_slash())
                .collect()
        };
        // Every child goes to the target's role folders or is skipped: no [Gmail], and no
        // [Gmail]/Empty below it, both reported as left out.
        let plan = map_folders(&list(gmail(false, None), target()), &FolderRules::default());
        assert_eq!(targets(&plan), ["INBOX", "Sent", "Trash"]);
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
        assert!(
            skipped.contains(&"[Gmail]") && skipped.contains(&"[Gmail]/Empty"),
            "{skipped:?}"
        );
        assert!(!plan.mappings.iter().any(|m| m.source == "[Gmail]"));
        // A label below it lands there: [Gmail] is planned, as that label's parent.
        let plan = map_folders(
            &list(gmail(false, Some("[Gmail]/Work")), target()),
            &FolderRules::default(),
        );
        assert!(folder(&plan, "[Gmail]").create);
        assert!(!plan.skipped.iter().any(|s| s.name == "[Gmail]"));
        // Subscribed on its own: planned, created and subscribed.
        let plan = map_folders(&list(gmail(true, None), target()), &FolderRules::default());
        let parent = folder(&plan, "[Gmail]");
        assert!(parent.create && parent.subscribe);
    }

    #[test]
    fn other_namespaces_are_reported() {
        let mut source = src(&["INBOX"]);
        source.other_namespace_folders = vec!["shared/team".to_owned(), "#Public/news".to_owned()];
        let plan = map_folders(&list(source, dst(&["INBOX"])), &FolderRules::default());
        let names: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["#Public/news", "shared/team"]);
        assert_eq!(codes(&plan), [WarningCode::OtherNamespaceSkipped]);
    }

    #[test]
    fn roles_map_to_the_targets_role_folders() {
        // (source folder, its attribute, target folders with attributes, expected target, reason)
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static str,
            MappingReason,
        );
        let cases: &[Case] = &[
            (
                "Sent Messages",
                "\\Sent",
                &[("Sent Items", "\\Sent")],
                "Sent Items",
                MappingReason::SpecialUse,
            ),
            (
                "Sent Messages",
                "",
                &[("Sent Items", "\\Sent")],
                "Sent Items",
                MappingReason::SpecialUse,
            ),
            (
                "Gesendete Elemente",
                "",
                &[("Sent", "")],
                "Sent",
                MappingReason::SpecialUse,
            ),
            (
                "éléments envoyés",
                "",
                &[("Sent", "")],
                "Sent",
                MappingReason::SpecialUse,
            ),
            (
                "Papierkorb",
                "",
                &[("Deleted Items", "")],
                "Deleted Items",
                MappingReason::SpecialUse,
            ),
            (
                "Trash",
                "\\Trash",
                &[("Trash", "\\Trash")],
                "Trash",
                MappingReason::Same,
            ),
            (
                "Spam",
                "",
                &[("Junk", "\\Junk"), ("Spam", "")],
                "Junk",
                MappingReason::SpecialUse,
            ),
            (
                "Entwürfe",
                "",
                &[("Drafts", "\\Drafts")],
                "Drafts",
                MappingReason::SpecialUse,
            ),
            (
                "Old",
                "\\Archive",
                &[("Archive", "")],
                "Archive",
                MappingReason::SpecialUse,
            ),
            // Attribute on a nested folder counts; names only at the top level.
            (
                "Mail/Outbox",
                "\\Sent",
                &[("Sent", "\\Sent")],
                "Sent",
                MappingReason::SpecialUse,
            ),
            (
                "Projects/Sent",
                "",
                &[("Sent", "\\Sent")],
                "Projects/Sent",
                MappingReason::Same,
            ),
            // A role the target lacks keeps the source name.
            (
                "Junk E-mail",
                "",
                &[("Sent", "\\Sent")],
                "Junk E-mail",
                MappingReason::Same,
            ),
            // A target name that merely looks like another role is not used.
            ("Bin", "", &[("Binary", "")], "Bin", MappingReason::Same),
        ];
        for (source_name, attr, targets, expected, reason) in cases {
            let mut sf = f(source_name, '/');
            if !attr.is_empty() {
                sf = with_role(sf, attr);
            }
            let mut tf = vec![f("INBOX", '.')];
            for (name, attr) in *targets {
                tf.push(if attr.is_empty() {
                    f(name, '.')
                } else {
                    with_role(f(name, '.'), attr)
                });
            }
            let plan = map_folders(
                &list(
                    account(Some('/'), vec![f("INBOX", '/'), sf]),
                    account(Some('.'), tf),
                ),
                &FolderRules::default(),
            );
            let m = mapping(&plan, source_name);
            assert_eq!(
                (m.target.as_str(), m.reason),
                (*expected, *reason),
                "{source_name}"
            );
            assert!(
                m.role.is_some() || *source_name == "Projects/Sent" || *source_name == "Bin",
                "{source_name}"
            );
        }
    }

    #[test]
    fn automap_off_keeps_names() {
        let rules = FolderRules {
            automap: false,
            ..FolderRules::default()
        };
        let plan = map_folders(
            &list(src(&["INBOX", "Sent Messages"]), dst(&["INBOX", "Sent"])),
            &rules,
        );
        assert_eq!(mapping(&plan, "Sent Messages").target, "Sent Messages");
    }

    #[test]
    fn explicit_maps_come_first() {
        let rules = FolderRules {
            maps: vec![
                (p("Sent Messages"), p("Archive/Sent")),
                (p("Old"), p("Work")),
                (p("Nope"), p("X")),
            ],
            ..FolderRules::default()
        };
        let plan = map_folders(
            &list(
                src(&["INBOX", "Sent Messages", "Old", "Work"]),
                dst(&["INBOX", "Sent"]),
            ),
            &rules,
        );
        let m = mapping(&plan, "Sent Messages");
        assert_eq!(
            (m.target.as_str(), m.reason),
            ("Archive/Sent", MappingReason::Explicit)
        );
        // The user sent Old into Work, which the source also has: they merge.
        let work = folder(&plan, "Work");
        let chain: Vec<&str> = work.sources.iter().map(|s| s.folder.raw.as_str()).collect();
        assert_eq!(chain, ["Old", "Work"]);
        assert!(folder(&plan, "Archive").create);
        assert_eq!(
            codes(&plan),
            [WarningCode::Other, WarningCode::FoldersMerged]
        );
        assert!(plan.warnings[0].message.contains("Nope"));
    }

    #[test]
    fn role_folders_merge_into_one_chain() {
        let source = account(
            Some('/'),
            vec![
                f("INBOX", '/'),
                f("Sent Items", '/'),
                with_role(f("Sent", '/'), "\\Sent"),
                f("Gesendet", '/'),
            ],
        );
        let target = account(
            Some('.'),
            vec![f("INBOX", '.'), with_role(f("Sent", '.'), "\\Sent")],
        );
        let plan = map_folders(&list(source, target), &FolderRules::default());
        let sent = folder(&plan, "Sent");
        let chain: Vec<&str> = sent.sources.iter().map(|s| s.folder.raw.as_str()).collect();
        // The attribute-marked folder first, then by name.
        assert_eq!(chain, ["Sent", "Gesendet", "Sent Items"]);
        assert!(!sent.create);
        assert_eq!(plan.folders.len(), 2);
        assert_eq!(codes(&plan), [WarningCode::FoldersMerged]);
        assert_eq!(plan.warnings[0].folder.as_deref(), Some("Sent"));
    }

    #[test]
    fn same_role_without_a_target_role_keeps_both() {
        let plan = map_folders(
            &list(src(&["INBOX", "Sent", "Sent Items"]), dst(&["INBOX"])),
            &FolderRules::default(),
        );
        assert_eq!(
            pairs(&plan),
            owned(&[
                ("INBOX", "INBOX"),
                ("Sent", "Sent"),
                ("Sent Items", "Sent Items")
            ])
        );
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn target_delimiters_inside_names_are_replaced() {
        let plan = map_folders(
            &list(
                src(&["INBOX", "v1.2", "v1.2/notes", "v1_2", "a.b.c"]),
                dst(&["INBOX"]),
            ),
            &FolderRules::default(),
        );
        assert_eq!(
            pairs(&plan),
            owned(&[
                ("INBOX", "INBOX"),
                ("a.b.c", "a_b_c"),
                ("v1.2", "v1_2 (2)"),
                // The sub-folder follows its renamed parent.
                ("v1.2/notes", "v1_2 (2)/notes"),
                ("v1_2", "v1_2"),
            ])
        );
        assert_eq!(
            mapping(&plan, "v1.2").reason,
            MappingReason::DelimiterReplaced
        );
        assert_eq!(mapping(&plan, "v1_2").reason, MappingReason::Same);
        assert!(
            codes(&plan)
                .iter()
                .all(|c| *c == WarningCode::DelimiterReplaced)
        );
        assert_eq!(plan.folders.len(), 5);
    }

    #[test]
    fn numbered_names_skip_paths_other_sources_use() {
        let plan = map_folders(
            &list(src(&["INBOX", "a.b", "a_b", "a_b (2)"]), dst(&["INBOX"])),
            &FolderRules::default(),
        );
        assert_eq!(mapping(&plan, "a.b").target, "a_b (3)");
        // A rerun sees "a_b (3)" on the target and still picks it: existing target folders do
        // not push the number up.
        let plan = map_folders(
            &list(
                src(&["INBOX", "a.b", "a_b", "a_b (2)"]),
                dst(&["INBOX", "a_b", "a_b (2)", "a_b (3)"]),
            ),
            &FolderRules::default(),
        );
        assert_eq!(mapping(&plan, "a.b").target, "a_b (3)");
        assert!(mapping(&plan, "a.b").target_exists);
    }

    #[test]
    fn names_differing_only_in_case_stay_apart() {
        let plan = map_folders(
            &list(src(&["INBOX", "Work", "work"]), dst(&["INBOX", "work"])),
            &FolderRules::default(),
        );
        assert_eq!(
            pairs(&plan),
            owned(&[("INBOX", "INBOX"), ("Work", "Work"), ("work", "work")])
        );
        assert!(folder(&plan, "Work").create);
        assert!(!folder(&plan, "work").create);
    }

    #[test]
    fn undecodable_names_are_escaped() {
        let mut bad = f("Foo&bar", '/');
        bad.decode_error = Some("unterminated".to_owned());
        let mut bad_target = f("Foo&bar", '.');
        bad_target.decode_error = Some("unterminated".to_owned());
        let target = account(Some('.'), vec![f("INBOX", '.'), bad_target]);
        let plan = map_folders(
            &list(account(Some('/'), vec![f("INBOX", '/'), bad]), target),
            &FolderRules::default(),
        );
        let m = mapping(&plan, "Foo&bar");
        assert_eq!(
            (m.target.as_str(), m.reason),
            ("Foo&bar", MappingReason::Escaped)
        );
        // An undecodable target name is not trusted to be the same folder.
        assert!(folder(&plan, "Foo&bar").create);
        assert_eq!(codes(&plan), [WarningCode::UndecodableName]);
    }

    #[test]
    fn parents_exist_or_are_planned() {
        let mut parent = f("Projects", '/');
        parent.selectable = false;
        parent.subscribed = false;
        let source = account(
            Some('/'),
            vec![
                f("INBOX", '/'),
                parent,
                f("Projects/2024/Q1", '/'),
                f("INBOX/Sub", '/'),
            ],
        );
        let plan = map_folders(&list(source, dst(&["INBOX"])), &FolderRules::default());
        let targets: Vec<String> = plan
            .folders
            .iter()
            .map(|f| f.target.display_slash())
            .collect();
        assert_eq!(
            targets,
            [
                "INBOX",
                "INBOX/Sub",
                "Projects",
                "Projects/2024",
                "Projects/2024/Q1"
            ]
        );
        // The non-selectable source parent is planned and created, never subscribed.
        let projects = folder(&plan, "Projects");
        assert!(projects.create && !projects.subscribe);
        assert_eq!(projects.sources.len(), 1);
        assert!(!projects.sources[0].selectable);
        // The missing intermediate level is planned without sources.
        let mid = folder(&plan, "Projects/2024");
        assert!(mid.create && mid.sources.is_empty());
        // INBOX is never created.
        assert!(!folder(&plan, "INBOX").create);
        // Existing parents are not planned.
        let plan = map_folders(
            &list(src(&["INBOX", "A/B/C"]), dst(&["INBOX", "A", "A/B"])),
            &FolderRules::default(),
        );
        let targets: Vec<String> = plan
            .folders
            .iter()
            .map(|f| f.target.display_slash())
            .collect();
        assert_eq!(targets, ["INBOX", "A/B/C"]);
    }

    #[test]
    fn existing_targets_are_matched_by_decoded_path() {
        // A Courier-style target: prefix `INBOX.`, raw names carry it, paths do not.
        let mut target = account(Some('.'), Vec::new());
        target.personal_prefix = "INBOX.".to_owned();
        for (raw, path) in [
            ("inbox", "INBOX"),
            ("INBOX.Entw&APw-rfe", "Entwürfe"),
            ("INBOX.INBOX", "INBOX"),
            ("INBOX.A.B", "A/B"),
        ] {
            let mut l = f(path, '.');
            l.raw = raw.to_owned();
            target.folders.push(l);
        }
        let plan = map_folders(
            &list(src(&["INBOX", "Drafts", "A/B"]), target),
            &FolderRules::default(),
        );
        assert_eq!(folder(&plan, "INBOX").target_raw.as_deref(), Some("inbox"));
        assert_eq!(mapping(&plan, "Drafts").target, "Entwürfe");
        assert_eq!(
            folder(&plan, "Entwürfe").target_raw.as_deref(),
            Some("INBOX.Entw&APw-rfe")
        );
        assert_eq!(
            folder(&plan, "A/B").target_raw.as_deref(),
            Some("INBOX.A.B")
        );
        // "A" is not listed on the target, so it is planned.
        assert!(folder(&plan, "A").create);
    }

    #[test]
    fn flat_targets_get_one_component() {
        let plan = map_folders(
            &list(
                src(&["INBOX", "a/b", "c"]),
                account(None, vec![f("INBOX", '/')]),
            ),
            &FolderRules::default(),
        );
        assert_eq!(
            pairs(&plan),
            owned(&[("INBOX", "INBOX"), ("a/b", "a/b"), ("c", "c")])
        );
        assert!(
            plan.folders
                .iter()
                .any(|f| f.target == FolderPath(vec!["a/b".to_owned()]) && f.create)
        );
        assert_eq!(plan.folders.len(), 3);
        assert_eq!(codes(&plan), [WarningCode::DelimiterReplaced]);
    }

    #[test]
    fn subscriptions_follow_any_source() {
        let mut a = f("Sent", '/');
        a.subscribed = false;
        let mut b = f("Sent Items", '/');
        b.subscribed = true;
        let mut c = f("Other", '/');
        c.subscribed = false;
        let source = account(Some('/'), vec![f("INBOX", '/'), a, b, c]);
        let plan = map_folders(
            &list(source, dst(&["INBOX", "Sent"])),
            &FolderRules::default(),
        );
        assert!(folder(&plan, "Sent").subscribe);
        assert!(!folder(&plan, "Other").subscribe);
    }

    #[test]
    fn listing_order_does_not_matter() {
        let names = [
            "INBOX",
            "Sent",
            "Sent Items",
            "a.b",
            "a_b",
            "x/y",
            "Trash",
            "Deleted Items",
        ];
        let target = dst(&["INBOX", "Trash"]);
        let first = map_folders(&list(src(&names), target.clone()), &FolderRules::default());
        let mut reversed = names;
        reversed.reverse();
        let second = map_folders(&list(src(&reversed), target), &FolderRules::default());
        assert_eq!(first, second);
    }

    #[test]
    fn excluded_roles_are_skipped_by_attribute_and_by_name() {
        let mut junk = f("Spam", '/');
        junk.role = None;
        let mut trash = f("Bin-by-attr", '/');
        trash.attributes.push("\\Trash".into());
        let source = account(
            Some('/'),
            vec![f("INBOX", '/'), junk, trash, f("Work", '/')],
        );
        let rules = FolderRules {
            exclude_roles: vec![FolderRole::Junk, FolderRole::Trash],
            ..FolderRules::default()
        };
        let plan = map_folders(&list(source, dst(&["INBOX"])), &rules);
        assert_eq!(
            pairs(&plan),
            vec![
                ("INBOX".into(), "INBOX".into()),
                ("Work".into(), "Work".into())
            ]
        );
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, vec!["Bin-by-attr", "Spam"], "in path order");
        assert!(
            plan.skipped
                .iter()
                .all(|s| s.reason.contains("--exclude-folder-role"))
        );
    }

    #[test]
    fn regex_renames_apply_in_order_after_automap_and_may_merge() {
        let source = src(&["INBOX", "Old/Projects/A", "Old/B", "Sent Items", "Keep"]);
        let target = account(
            Some('/'),
            vec![f("INBOX", '/'), with_role(f("Sent", '/'), "\\Sent")],
        );
        let rules = FolderRules {
            renames: vec![
                (re("^Old/"), "Archive/".into(), false),
                (re("^Archive/Projects/(.*)$"), "Projects/$1".into(), false),
                (re("^Sent$"), "Sent/Imported".into(), false),
                (re("^Keep$"), "".into(), false),
            ],
            ..FolderRules::default()
        };
        let plan = map_folders(&list(source, target), &rules);
        assert_eq!(mapping(&plan, "Old/Projects/A").target, "Projects/A");
        assert_eq!(mapping(&plan, "Old/B").target, "Archive/B");
        assert_eq!(mapping(&plan, "Old/B").reason, MappingReason::Renamed);
        assert_eq!(
            mapping(&plan, "Sent Items").target,
            "Sent/Imported",
            "applied after automap"
        );
        assert_eq!(
            mapping(&plan, "Keep").target,
            "Keep",
            "a rule giving an empty name is not applied"
        );
        assert_eq!(mapping(&plan, "INBOX").target, "INBOX");
        // Two sources renamed onto one folder merge, as with --map.
        let rules = FolderRules {
            renames: vec![(re("^(A|B)$"), "AB".into(), false)],
            ..FolderRules::default()
        };
        let plan = map_folders(&list(src(&["INBOX", "A", "B"]), dst(&["INBOX"])), &rules);
        assert_eq!(folder(&plan, "AB").sources.len(), 2);
        assert!(codes(&plan).contains(&WarningCode::FoldersMerged));
    }
}
