//! ACL: every redsink command is held to the rules of the built-in command it stands for
//! (its *equivalent*: `SINK.HASH` writes as `HSET` does, `DS.GET` reads as `HGET` does).
//!
//! - Redis 7.2+ and Valkey let a module declare a command's ACL categories, and 7.4+ (and
//!   Valkey 8) let it add its own: there every command takes its equivalent's categories
//!   and `@redsink`, and Redis checks them before calling us.
//! - On 7.0 a module command belongs to no category, so `-@write` would not fence it. There
//!   each command checks, before it reads or writes anything, that the caller may run its
//!   equivalent on the same key, as Redis would; a denial is a `NOPERM` reply and an
//!   `ACL LOG` entry, as Redis's own.
//! - On every server, each command's key spec says what it does with its key (read,
//!   overwrite, delete) as its equivalent's does, so key selectors such as `%R~*` apply.
//! - On every server, the commands that carry state to replicas and the AOF check
//!   themselves (see [`Check::Always`]), and `SINK.WRITE` checks each row's key.
//!
//! Like Redis, nothing is checked for commands from the primary or the AOF.

use std::ffi::{c_int, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context, ContextFlags, RedisString};
use redsink_core::args::quote;

use crate::command::errno;
use crate::error::Error;

/// The ACL category of every redsink command, where the server lets modules add one.
const OWN_CATEGORY: &CStr = c"redsink";

/// Whether Redis checks the categories itself (declared at load); else each command does.
static DECLARED: AtomicBool = AtomicBool::new(false);

/// The ACL rules a command is held to.
#[derive(Debug)]
pub struct Access {
    pub check: Check,
    /// The ACL categories declared where the server allows (with `@redsink`, but for
    /// [`Check::Always`]): those of the equivalent.
    pub categories: &'static CStr,
    /// What the command does with its one key, its first argument, as the equivalent
    /// does (key-spec flags, `REDISMODULE_CMD_KEY_*`); `None` for commands without a key.
    pub key: Option<u32>,
}

/// Which built-in commands a command's caller must be allowed to run, as command lines
/// without arguments (a name, or a name and subcommand), and when it checks them itself.
#[derive(Debug)]
pub enum Check {
    /// Its equivalent, whose categories it is declared in: Redis checks them, but on 7.0,
    /// where a module cannot declare categories, the command checks the equivalent.
    Equivalent(&'static [&'static CStr]),
    /// Each of these, on its key, checked by the command itself on every server, skipping
    /// the primary's link and the AOF. For the commands that carry state to replicas and
    /// the AOF: Redis and Valkey releases without the fix of redis/redis#14541 check ACL
    /// as the *default* user when they load a MULTI/EXEC block from the AOF, and the
    /// blocks these commands replicate in hold them; declared in `@dangerous` or
    /// `@redsink`, a hardened default user (`-@dangerous`) would drop them there, silently.
    Always(&'static [&'static [&'static CStr]]),
    /// `SINK.WRITE`: each row's write, as its sink's type (`HSET` for a hash sink…), on the
    /// row's key, by the command on every server (row keys are not command arguments).
    Rows,
}

const fn keyed(name: &'static [&'static CStr], categories: &'static CStr, key: u32) -> Access {
    Access {
        check: Check::Equivalent(name),
        categories,
        key: Some(key),
    }
}

const fn keyless(name: &'static [&'static CStr], categories: &'static CStr) -> Access {
    Access {
        check: Check::Equivalent(name),
        categories,
        key: None,
    }
}

// Key-spec flags, as Redis's own command table gives them to each equivalent.
const RO: u32 = raw::REDISMODULE_CMD_KEY_RO;
const RW: u32 = raw::REDISMODULE_CMD_KEY_RW;
const OW: u32 = raw::REDISMODULE_CMD_KEY_OW;
const RM: u32 = raw::REDISMODULE_CMD_KEY_RM;
const ACCESS: u32 = raw::REDISMODULE_CMD_KEY_ACCESS;
const UPDATE: u32 = raw::REDISMODULE_CMD_KEY_UPDATE;
const INSERT: u32 = raw::REDISMODULE_CMD_KEY_INSERT;
const DELETE: u32 = raw::REDISMODULE_CMD_KEY_DELETE;

// The equivalents. (Each keyed one is checked with its one key right after its name, and
// never without it: Redis finds some built-in commands' keys by position, as SET's.)
pub const HSET: Access = keyed(&[c"hset"], c"write hash fast", RW | UPDATE);
pub const HDEL: Access = keyed(&[c"hdel"], c"write hash fast", RW | DELETE);
pub const HGET: Access = keyed(&[c"hget"], c"read hash fast", RO | ACCESS);
pub const HMGET: Access = keyed(&[c"hmget"], c"read hash fast", RO | ACCESS);
pub const HLEN: Access = keyed(&[c"hlen"], c"read hash fast", RO);
pub const HSCAN: Access = keyed(&[c"hscan"], c"read hash slow", RO | ACCESS);
pub const HGETALL: Access = keyed(&[c"hgetall"], c"read hash slow", RO | ACCESS);
/// SET without GET, which overwrites whatever the key held.
pub const SET: Access = keyed(&[c"set"], c"write string slow", OW | UPDATE);
/// JSON.SET (and JSON.MERGE, whose rules are the same): RedisJSON's command, or Redis 8's.
/// Declared in `@write @slow` as Redis 8 has it, where RedisJSON 2.8 declares no category:
/// `-@write` fences it wherever a module can declare categories.
pub const JSON_SET: Access = keyed(&[c"json.set"], c"write slow", RW | ACCESS | UPDATE);
/// `SINK.JSON … PATCH`, which runs JSON.MERGE: checked as it too.
pub const JSON_MERGE: Access = keyed(&[c"json.merge"], c"write slow", RW | ACCESS | UPDATE);
pub const RPUSH: Access = keyed(&[c"rpush"], c"write list fast", RW | INSERT);
pub const SADD: Access = keyed(&[c"sadd"], c"write set fast", RW | INSERT);
pub const ZADD: Access = keyed(&[c"zadd"], c"write sortedset fast", RW | UPDATE);
pub const XADD: Access = keyed(&[c"xadd"], c"write stream fast", RW | UPDATE);
pub const DEL: Access = keyed(&[c"del"], c"write keyspace slow", RM | DELETE);
pub const EXISTS: Access = keyed(&[c"exists"], c"read keyspace fast", RO);
/// The commands that carry state to replicas and the AOF set what a key holds (or what
/// fences later writes to it) unchecked, as RESTORE does: the caller must be allowed
/// RESTORE (`@dangerous`) and SINK.DEL (`@redsink`, which no built-in command has) on
/// the key. Declared in `@write` only (see [`Check::Always`]).
pub const REPLICATION: Access = Access {
    check: Check::Always(&[&[c"restore"], &[c"sink.del"]]),
    categories: c"write",
    key: Some(OW | UPDATE),
};
/// Named sinks are stored, replicated definitions that later writes run, as functions
/// are: they are defined, dropped and listed under the FUNCTION subcommands' rules.
pub const FUNCTION_LOAD: Access = keyless(&[c"function", c"load"], c"write slow scripting");
pub const FUNCTION_DELETE: Access = keyless(&[c"function", c"delete"], c"write slow scripting");
pub const FUNCTION_LIST: Access = keyless(&[c"function", c"list"], c"slow scripting");
/// `SINK.WRITE`.
pub const ROWS: Access = Access {
    check: Check::Rows,
    categories: c"write slow",
    key: None,
};

/// At load: adds the `@redsink` category where the server allows. Whether it did.
pub fn add_own_category(ctx: &Context) -> bool {
    // SAFETY: called from OnLoad with its context, as RM_AddACLCategory requires.
    unsafe {
        raw::RedisModule_AddACLCategory
            .is_some_and(|add| add(ctx.ctx, OWN_CATEGORY.as_ptr()) == raw::REDISMODULE_OK as c_int)
    }
}

/// At load, for a command just created: its key spec, and its categories where the server
/// lets modules declare them (`own_category`: with `@redsink`).
pub fn declare(
    command: *mut raw::RedisModuleCommand,
    access: &Access,
    own_category: bool,
) -> Result<(), String> {
    set_key_spec(command, access)?;
    let Some(set_categories) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else {
        return Ok(());
    };
    let mut categories = access.categories.to_bytes().to_vec();
    if own_category && !matches!(access.check, Check::Always(_)) {
        categories.push(b' ');
        categories.extend_from_slice(OWN_CATEGORY.to_bytes());
    }
    let categories = std::ffi::CString::new(categories).map_err(|e| e.to_string())?;
    // SAFETY: a command this module created during OnLoad, and a C string.
    if unsafe { set_categories(command, categories.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        return Err(format!(
            "the server refused the ACL categories {categories:?}"
        ));
    }
    DECLARED.store(true, Ordering::Relaxed);
    Ok(())
}

/// The command's key spec (its first argument, and what it does with it); none without a
/// key.
fn set_key_spec(command: *mut raw::RedisModuleCommand, access: &Access) -> Result<(), String> {
    let Some(flags) = access.key else {
        return Ok(());
    };
    let Some(set_info) = (unsafe { raw::RedisModule_SetCommandInfo }) else {
        return Ok(());
    };
    let key_specs = get_redis_key_spec(vec![KeySpec::new(
        None,
        KeySpecFlags::from_bits_truncate(flags),
        BeginSearch::new_index(1),
        FindKeys::new_range(0, 1, 0),
    )]);
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: ptr::null(),
        complexity: ptr::null(),
        since: ptr::null(),
        history: ptr::null_mut(),
        tips: ptr::null(),
        arity: 0,
        key_specs: key_specs.as_ptr().cast_mut(),
        args: ptr::null_mut(),
    };
    // SAFETY: a command this module created during OnLoad; `info` and the key specs (ended
    // by a zeroed one, without notes or keywords to free) live through the call, which
    // copies them.
    if unsafe { set_info(command, &info) } != raw::REDISMODULE_OK as c_int {
        return Err("the server refused the command's key spec".into());
    }
    Ok(())
}

/// Whether Redis checks each command's categories (else [`authorize`] does).
pub fn declared() -> bool {
    DECLARED.load(Ordering::Relaxed)
}

/// Before a command runs: on 7.0, where Redis could not check its categories, the caller
/// must be allowed to run its equivalent on the command's key; on every server, for
/// [`Check::Always`], each of its commands.
pub fn authorize(
    ctx: &Context,
    command: &CStr,
    access: &Access,
    args: &[RedisString],
) -> Result<(), Error> {
    let lines: &[&[&CStr]] = match &access.check {
        Check::Equivalent(line) if !declared() => std::slice::from_ref(line),
        Check::Always(lines) => lines,
        Check::Equivalent(_) | Check::Rows => return Ok(()),
    };
    // A keyed equivalent is never checked without its key: Redis finds some built-in
    // commands' keys by position (SET's), past the end of a line too short.
    let key = match (access.key, args.get(1)) {
        (Some(_), None) => return Err(redsink_core::Error::WrongArity.into()),
        (Some(_), key) => key,
        (None, _) => None,
    };
    let Caller::User(user) = Caller::of(ctx) else {
        return Ok(());
    };
    for line in lines {
        let Err(denied) = user.check(ctx, line, access.key, key) else {
            continue;
        };
        let command = command.to_string_lossy().to_lowercase();
        let checked_as = line_name(line);
        let message = match denied {
            Denied::Key => {
                "this user has no permissions to access one of the keys used as arguments".into()
            }
            Denied::Command => format!(
                "this user has no permissions to run the '{command}' command (which needs \
                 the permissions of '{checked_as}')"
            ),
            Denied::NoSuchCommand => format!(
                "this user has no permissions to run the '{command}' command: redsink checks \
                 it as '{checked_as}', which is not a command of this server (renamed, or \
                 its module not loaded)"
            ),
            Denied::UnknownUser => UNKNOWN_USER.into(),
        };
        user.log(ctx, denied, &command, key);
        return Err(Error::NoPermission(message));
    }
    Ok(())
}

/// Who runs a command, as ACL sees it.
pub enum Caller {
    /// The primary's link, the AOF, or a client Redis runs without a user (a module's
    /// own calls): Redis checks nothing for these, and neither does redsink.
    Unrestricted,
    User(User),
}

/// The id Redis gives the client that replays the AOF (`CLIENT_ID_AOF`).
const AOF_CLIENT_ID: u64 = u64::MAX;

impl Caller {
    pub fn of(ctx: &Context) -> Caller {
        // SAFETY: the context of a running command.
        let id = unsafe { raw::RedisModule_GetClientId.map_or(0, |id| id(ctx.ctx)) };
        if id == AOF_CLIENT_ID || ctx.get_flags().contains(ContextFlags::REPLICATED) {
            return Caller::Unrestricted;
        }
        match user_name(ctx, id) {
            UserName::Root => Caller::Unrestricted,
            // SAFETY: a string this context made; the user found is freed by `User`'s
            // drop.
            UserName::Known(name) => Caller::User(User(unsafe {
                raw::RedisModule_GetModuleUserFromUserName
                    .map_or(ptr::null_mut(), |get| get(name.inner))
            })),
            UserName::Unknown => Caller::User(User(ptr::null_mut())),
        }
    }

    /// For `SINK.WRITE`'s rows: whether the caller may run `access`'s equivalent on the
    /// row's key; a `NOPERM` error naming the row if not.
    pub fn check_row(
        &self,
        ctx: &Context,
        access: &Access,
        key: &[u8],
        row: usize,
    ) -> Result<(), Error> {
        let (Caller::User(user), Check::Equivalent(line)) = (self, &access.check) else {
            return Ok(());
        };
        let key = RedisString::create_from_slice(ctx.ctx, key);
        let Err(denied) = user.check(ctx, line, access.key, Some(&key)) else {
            return Ok(());
        };
        let checked_as = line_name(line);
        let message = match denied {
            Denied::Key => format!(
                "this user has no permissions to access the key '{}' (row {row})",
                quote(key.as_slice())
            ),
            Denied::UnknownUser => UNKNOWN_USER.into(),
            Denied::Command | Denied::NoSuchCommand => format!(
                "this user has no permissions to run the '{checked_as}' command, which row \
                 {row} needs"
            ),
        };
        user.log(ctx, denied, &checked_as, Some(&key));
        Err(Error::NoPermission(message))
    }
}

const UNKNOWN_USER: &str = "redsink cannot tell this client's ACL user (a user that a \
                            module made and logged the client in as?), so it permits nothing";

/// What the server says of the caller's ACL user.
enum UserName {
    Known(RedisString),
    /// A client without a user: the primary's link, a module's own calls.
    Root,
    /// The server cannot say (a script's client, on a server without RM_SetContextUser):
    /// nothing is permitted.
    Unknown,
}

/// The user of the client with `id`, the command's caller.
///
/// `RM_GetCurrentUserName` dereferences the client's user without looking, and the
/// primary's link, a module's own calls and the scripts they run have none: asking it
/// there would crash the server. A connected client is looked up by id, which says so
/// safely. For the others (scripts' and modules' clients) a call made "as the user" (`C`)
/// is refused with ENOTSUP when there is no user, before anything else; made to a name no
/// command has, it runs nothing and is otherwise refused with ENOENT.
fn user_name(ctx: &Context, id: u64) -> UserName {
    if id == 0 {
        return UserName::Root;
    }
    // SAFETY: the context of a running command; the strings returned are ours to free
    // (RedisString's drop).
    unsafe {
        let name =
            raw::RedisModule_GetClientUserNameById.map_or(ptr::null_mut(), |get| get(ctx.ctx, id));
        if !name.is_null() {
            return UserName::Known(RedisString::from_redis_module_string(ctx.ctx, name));
        }
        match errno() {
            Some(libc::ENOTSUP) => return UserName::Root,
            Some(libc::ENOENT) => {}
            _ => return UserName::Unknown,
        }
        // The ENOTSUP answer came with RM_SetContextUser: without it, no safe way to ask.
        let (Some(call), Some(_)) = (raw::RedisModule_Call, raw::RedisModule_SetContextUser) else {
            return UserName::Unknown;
        };
        let reply = call(ctx.ctx, c"redsink: no such command".as_ptr(), c"C".as_ptr());
        if !reply.is_null() {
            if let Some(free) = raw::RedisModule_FreeCallReply {
                free(reply);
            }
            return UserName::Unknown;
        }
        match errno() {
            Some(libc::ENOTSUP) => UserName::Root,
            Some(libc::ENOENT) => {
                let name =
                    raw::RedisModule_GetCurrentUserName.map_or(ptr::null_mut(), |get| get(ctx.ctx));
                if name.is_null() {
                    UserName::Unknown
                } else {
                    UserName::Known(RedisString::from_redis_module_string(ctx.ctx, name))
                }
            }
            _ => UserName::Unknown,
        }
    }
}

/// An ACL user, freed when dropped; null if the caller's user no longer exists (then
/// nothing is permitted).
pub struct User(*mut raw::RedisModuleUser);

/// Why a check failed.
#[derive(Debug, Clone, Copy)]
enum Denied {
    /// The equivalent command (or its category).
    Command,
    /// The key.
    Key,
    /// The equivalent is not a command of this server (renamed away, or the module
    /// that has it, such as RedisJSON, not loaded).
    NoSuchCommand,
    /// No ACL user has the caller's user's name: a user a module made, which a module
    /// logged the client in as (RM_AuthenticateClientWithUser), or the server could not
    /// say.
    UnknownUser,
}

impl User {
    /// Whether this user may run the command line `line` on `key` (what the command does
    /// with it: key-spec flags `flags`).
    fn check(
        &self,
        ctx: &Context,
        line: &[&CStr],
        flags: Option<u32>,
        key: Option<&RedisString>,
    ) -> Result<(), Denied> {
        let Some(check) = (unsafe { raw::RedisModule_ACLCheckCommandPermissions }) else {
            return Ok(());
        };
        if self.0.is_null() {
            return Err(Denied::UnknownUser);
        }
        // The command line, made without allocating more than its strings: a command
        // checks on every call on 7.0.
        let mut words: [Option<RedisString>; 2] = [None, None];
        let mut argv = [ptr::null_mut(); 3];
        let mut argc = 0;
        for (slot, word) in words.iter_mut().zip(line) {
            let word = slot.insert(RedisString::create_from_slice(ctx.ctx, word.to_bytes()));
            argv[argc] = word.inner;
            argc += 1;
        }
        if let Some(key) = key {
            argv[argc] = key.inner;
            argc += 1;
        }
        // SAFETY: a user this module holds, and a command line of strings alive for the
        // call, whose key (if any) is right after the name, where its key spec says.
        let allowed = unsafe { check(self.0, argv.as_mut_ptr(), argc as c_int) };
        if allowed == raw::REDISMODULE_OK as c_int {
            return Ok(());
        }
        if errno() == Some(libc::ENOENT) {
            return Err(Denied::NoSuchCommand);
        }
        match (key, flags) {
            (Some(key), Some(flags)) if !self.may_access(key, flags) => Err(Denied::Key),
            _ => Err(Denied::Command),
        }
    }

    /// Whether the user's key patterns let it do what `flags` say to `key`.
    fn may_access(&self, key: &RedisString, flags: u32) -> bool {
        // The check takes the data flags only (access, insert, delete, update).
        let data = flags & (ACCESS | INSERT | DELETE | UPDATE);
        // SAFETY: a user this module holds and a string alive for the call.
        unsafe {
            raw::RedisModule_ACLCheckKeyPermissions.is_none_or(|check| {
                check(self.0, key.inner, data as c_int) == raw::REDISMODULE_OK as c_int
            })
        }
    }

    /// An `ACL LOG` entry for a refusal, as Redis makes for its own: the key refused, or
    /// the command.
    fn log(&self, ctx: &Context, denied: Denied, command: &str, key: Option<&RedisString>) {
        if self.0.is_null() {
            return;
        }
        let command = RedisString::create_from_slice(ctx.ctx, command.as_bytes());
        let (reason, object) = match (denied, key) {
            (Denied::Key, Some(key)) => (
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
                key,
            ),
            _ => (
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CMD,
                &command,
            ),
        };
        // SAFETY: a command's context, a user this module holds and a string alive for
        // the call (Redis copies it).
        unsafe {
            if let Some(add) = raw::RedisModule_ACLAddLogEntry {
                add(ctx.ctx, self.0, object.inner, reason);
            }
        }
    }
}

/// A command line as `COMMAND INFO` names it (`hset`, `function|load`).
fn line_name(line: &[&CStr]) -> String {
    line.iter()
        .map(|word| word.to_string_lossy())
        .collect::<Vec<_>>()
        .join("|")
}

impl Drop for User {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: a user from RM_GetModuleUserFromUserName, freed once.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeModuleUser {
                free(self.0);
            }
        }
    }
}
