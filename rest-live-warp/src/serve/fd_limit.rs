//! The default connection limit, from the process's open-file limit: every connection is a file
//! descriptor, and running out of them fails everything else too (database files and
//! connections, logs), so the limit keeps a margin below it.

/// Open files kept for everything but connections: a tenth of the limit, at least this many
/// (and at most half of a very low limit).
const MIN_RESERVE: usize = 64;

/// The limit when the process's is unknown (not a Unix).
const FALLBACK: usize = 10_000;

/// The connection limit to apply: `configured`, or else [`default_max_connections`]. Either way
/// the open-file limit is raised first, as far as allowed.
pub(super) fn max_connections(configured: Option<usize>) -> usize {
    let derived = default_max_connections();
    match configured {
        Some(max) => {
            if max > derived {
                tracing::warn!(
                    max_connections = max,
                    safe = derived,
                    "max_connections is near or above the open-file limit: accepting may fail \
                     with too many open files"
                );
            }
            max
        }
        None => derived,
    }
}

/// The default of [`Config::max_connections`](rest_live_core::Config::max_connections): the soft
/// `RLIMIT_NOFILE` once raised to the hard limit (as far as the system allows), less what is kept
/// for everything else: a tenth of it, at least 64 descriptors (at most half of a very low limit).
/// 10,000 where there is no such limit. Like [`serve`](crate::serve), which calls it, it raises
/// the process's soft limit.
pub fn default_max_connections() -> usize {
    match raise_open_file_limit() {
        Some(limit) => within(limit),
        None => FALLBACK,
    }
}

/// The connections that fit in `limit` open files.
fn within(limit: usize) -> usize {
    let reserve = (limit / 10).max(MIN_RESERVE).min(limit / 2);
    (limit - reserve).max(1)
}

/// Raises the soft open-file limit toward the hard one; returns the soft limit now in force.
#[cfg(unix)]
fn raise_open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let soft = limit.rlim_cur;
    // The hard limit may be unlimited while the kernel refuses a soft limit above its own maximum
    // (macOS): smaller steps then.
    let steps: [libc::rlim_t; 4] = [limit.rlim_max, 1 << 20, 65_536, 10_240];
    for target in steps {
        if target <= soft || target > limit.rlim_max {
            continue;
        }
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(from = soft, to = target, "raised the open-file limit");
            return Some(usize::try_from(target).unwrap_or(usize::MAX));
        }
    }
    Some(usize::try_from(soft).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn the_limit_keeps_a_tenth_and_at_least_64_descriptors() {
        assert_eq!(within(1024), 1024 - 102);
        assert_eq!(within(1 << 20), (1 << 20) - (1 << 20) / 10);
        assert_eq!(within(256), 256 - 64);
        assert_eq!(within(100), 50);
        assert_eq!(within(1), 1);
        assert!(within(usize::MAX) < usize::MAX);
    }
}
