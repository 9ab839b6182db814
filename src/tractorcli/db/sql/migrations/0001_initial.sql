-- tractorcli job database, schema version 1: the whole system.
--
-- Names follow Tractor's entity attributes (reference section 2.5) so that
-- tq search clauses map onto columns directly.  States are text with CHECK
-- constraints rather than enum types: enum values cannot be used in the
-- transaction that adds them, which would make later migrations awkward.
--
-- Hot paths (claim, finish) touch only `ready`, `commands`, `invocations`
-- and one `jobs` row; everything else is read-mostly.

-- The job counter.  jid values come from here, so they survive backup and
-- restore (the sequence is part of the database) and can be moved forward
-- with tractor-dbctl --set-job-counter.
CREATE SEQUENCE jid_seq AS bigint MINVALUE 1 START 1;

-- Site parameters stored in the database (Tractor's `param` table).
-- Computed ones (jidcounter, schema-version) are added by the
-- `show_params` query.
CREATE TABLE params (
    name  text PRIMARY KEY,
    value text NOT NULL
);

INSERT INTO params (name, value) VALUES
    ('archiving', '1'),
    ('site-created', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));

-- Service-key expressions, stored once each.  Blades evaluate each distinct
-- expression once per poll instead of once per ready command.
CREATE TABLE service_exprs (
    svcid serial PRIMARY KEY,
    expr  text NOT NULL UNIQUE
);

CREATE TABLE jobs (
    jid            bigint PRIMARY KEY DEFAULT nextval('jid_seq'),
    owner          text NOT NULL,
    spoolhost      text NOT NULL DEFAULT '',
    spoolfile      text NOT NULL DEFAULT '',
    spoolcwd       text NOT NULL DEFAULT '',
    spooladdr      text NOT NULL DEFAULT '',
    title          text NOT NULL DEFAULT '',
    assignments    jsonb NOT NULL DEFAULT '{}',      -- Assign var {value}
    tier           text NOT NULL DEFAULT 'default',
    priority       double precision NOT NULL DEFAULT 1,
    crews          text[] NOT NULL DEFAULT '{}',
    projects       text[] NOT NULL DEFAULT '{default}',
    tags           text[] NOT NULL DEFAULT '{}',
    service        text NOT NULL DEFAULT '',         -- job-wide expression, ANDed in
    avoid          text[] NOT NULL DEFAULT '{}',     -- -avoid keys, ANDed as NOT
    envkey         text[] NOT NULL DEFAULT '{}',
    editpolicy     text NOT NULL DEFAULT '',
    minslots       integer,
    maxslots       integer,
    etalevel       integer NOT NULL DEFAULT 1,
    afterjids      bigint[] NOT NULL DEFAULT '{}',
    spooltime      timestamptz NOT NULL DEFAULT now(),
    pausetime      timestamptz,
    aftertime      timestamptz,
    starttime      timestamptz,
    stoptime       timestamptz,
    deletetime     timestamptz,
    elapsedsecs    double precision NOT NULL DEFAULT 0,
    esttotalsecs   double precision NOT NULL DEFAULT 0,
    numtasks       integer NOT NULL DEFAULT 0,
    numblocked     integer NOT NULL DEFAULT 0,
    numready       integer NOT NULL DEFAULT 0,
    numactive      integer NOT NULL DEFAULT 0,
    numerror       integer NOT NULL DEFAULT 0,
    numdone        integer NOT NULL DEFAULT 0,
    maxtid         integer NOT NULL DEFAULT 0,
    maxcid         integer NOT NULL DEFAULT 0,
    comment        text NOT NULL DEFAULT '',
    metadata       text NOT NULL DEFAULT '',
    maxactive      integer NOT NULL DEFAULT 0,        -- 0 = unlimited
    serialsubtasks boolean NOT NULL DEFAULT false,
    dirmap         jsonb NOT NULL DEFAULT '[]',      -- [[src, dst, zone], ...]
    pil            integer NOT NULL DEFAULT 0,
    lastnoteid     bigint,
    -- Where the job stands as a whole (derived from the counters, kept so
    -- housekeeping can find jobs to finish without scanning tasks):
    -- 'live' -> 'postscript' (running its -postscript commands) -> 'finished'.
    phase          text NOT NULL DEFAULT 'live'
                   CHECK (phase IN ('live', 'postscript', 'finished')),
    -- JobLock (tq lock/unlock)
    lockowner      text,
    locktime       timestamptz,
    locknote       text,
    -- The job as it was submitted (Alfred or JSON text), for jobdump and review.
    script         text,
    scriptformat   text CHECK (scriptformat IN ('alfred', 'json', 'generated')),
    CHECK (maxactive >= 0)
);

CREATE INDEX jobs_owner_idx ON jobs (owner, spooltime);
CREATE INDEX jobs_live_idx ON jobs (priority DESC, jid) WHERE deletetime IS NULL AND phase <> 'finished';
CREATE INDEX jobs_deleted_idx ON jobs (deletetime) WHERE deletetime IS NOT NULL;
CREATE INDEX jobs_stoptime_idx ON jobs (stoptime) WHERE stoptime IS NOT NULL;

CREATE TABLE tasks (
    jid            bigint NOT NULL REFERENCES jobs ON DELETE CASCADE,
    tid            integer NOT NULL CHECK (tid > 0),
    title          text NOT NULL DEFAULT '',
    id             text,                             -- -id, for Instance and -refersto
    service        text,                             -- shared-server checkout (task -service)
    minslots       integer,
    maxslots       integer,
    serialsubtasks boolean NOT NULL DEFAULT false,
    resumeblock    boolean NOT NULL DEFAULT false,
    attached       boolean NOT NULL DEFAULT true,    -- false: expand task detached by restart
    state          text NOT NULL DEFAULT 'blocked'
                   CHECK (state IN ('blocked', 'ready', 'active', 'error', 'done')),
    statetime      timestamptz NOT NULL DEFAULT now(),
    readytime      timestamptz,
    activetime     timestamptz,
    currcid        integer,
    haslog         boolean NOT NULL DEFAULT false,
    preview        text[] NOT NULL DEFAULT '{}',
    chaser         text[] NOT NULL DEFAULT '{}',
    progress       real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    metadata       text NOT NULL DEFAULT '',
    retrycount     integer NOT NULL DEFAULT 0,
    resumecount    integer NOT NULL DEFAULT 0,       -- %R: passes of a resume loop
    -- Tree position: tree parent (NULL = top level) and order among siblings.
    parent_tid     integer,
    position       integer NOT NULL DEFAULT 0,
    -- Event-driven readiness: prerequisites not yet done (subtasks, Instance
    -- targets, the serial predecessor).  At zero the task becomes ready.
    pending        integer NOT NULL DEFAULT 0 CHECK (pending >= 0),
    PRIMARY KEY (jid, tid)
);

CREATE INDEX tasks_state_idx ON tasks (state, statetime);
CREATE INDEX tasks_parent_idx ON tasks (jid, parent_tid, position);

-- Dependency edges: the tree (kind 'tree') and Instance references
-- (kind 'instance').  A task's `ptids` are the parents of its edges, tree
-- parent first.  parent_tid 0 stands for the job itself.
CREATE TABLE task_edges (
    jid        bigint NOT NULL REFERENCES jobs ON DELETE CASCADE,
    parent_tid integer NOT NULL,
    child_tid  integer NOT NULL,
    kind       text NOT NULL DEFAULT 'tree' CHECK (kind IN ('tree', 'instance')),
    PRIMARY KEY (jid, parent_tid, child_tid),
    FOREIGN KEY (jid, child_tid) REFERENCES tasks (jid, tid) ON DELETE CASCADE
);

CREATE INDEX task_edges_child_idx ON task_edges (jid, child_tid);

CREATE TABLE commands (
    jid          bigint NOT NULL REFERENCES jobs ON DELETE CASCADE,
    cid          integer NOT NULL CHECK (cid > 0),
    tid          integer NOT NULL DEFAULT 0,         -- 0: job-level (-cleanup, -postscript)
    position     integer NOT NULL DEFAULT 0,         -- order within its task's list
    argv         text[] NOT NULL,
    local        boolean NOT NULL DEFAULT false,     -- Cmd (spooling host) vs RemoteCmd
    expand       text,                               -- NULL: no; '' stdout; else a file name
    runtype      text NOT NULL DEFAULT 'regular'
                 CHECK (runtype IN ('regular', 'cleanup', 'post_always', 'post_error', 'post_done')),
    msg          text,
    service      text NOT NULL DEFAULT '',           -- the command's own expression
    svcid        integer REFERENCES service_exprs,   -- effective expression (job AND cmd AND NOT avoid)
    tags         text[] NOT NULL DEFAULT '{}',
    id           text,
    refersto     text,
    minslots     integer,
    maxslots     integer,
    samehost     boolean NOT NULL DEFAULT false,
    envkey       text[] NOT NULL DEFAULT '{}',
    retryrcodes  integer[] NOT NULL DEFAULT '{}',
    metadata     text NOT NULL DEFAULT '',
    metrics      text NOT NULL DEFAULT '',
    resumewhile  text[] NOT NULL DEFAULT '{}',
    resumepin    boolean NOT NULL DEFAULT false,
    minrunsecs   double precision,
    maxrunsecs   double precision,
    state        text NOT NULL DEFAULT 'blocked'
                 CHECK (state IN ('blocked', 'ready', 'active', 'error', 'done', 'skipped')),
    statetime    timestamptz NOT NULL DEFAULT now(),
    autoretries  integer NOT NULL DEFAULT 0,         -- automatic retries spent (retryrc, auto)
    PRIMARY KEY (jid, cid)
);

CREATE INDEX commands_task_idx ON commands (jid, tid, position);

-- The hot queue of dispatchable commands.  A row exists exactly while its
-- command is ready; blades claim with ORDER BY ... FOR UPDATE SKIP LOCKED.
CREATE TABLE ready (
    jid       bigint NOT NULL,
    cid       integer NOT NULL,
    tid       integer NOT NULL,
    svcid     integer,
    tierpri   integer NOT NULL DEFAULT 50,
    priority  double precision NOT NULL DEFAULT 1,
    readytime timestamptz NOT NULL DEFAULT now(),
    local     boolean NOT NULL DEFAULT false,
    spoolhost text NOT NULL DEFAULT '',              -- where a local Cmd must run
    pinblade  uuid,                                  -- -resumepin / -refersto binding
    PRIMARY KEY (jid, cid),
    FOREIGN KEY (jid, cid) REFERENCES commands (jid, cid) ON DELETE CASCADE
);

CREATE INDEX ready_order_idx ON ready (tierpri DESC, priority DESC, jid, cid);
CREATE INDEX ready_svc_idx ON ready (svcid);

CREATE TABLE blades (
    bladeid       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    ipaddr        text NOT NULL DEFAULT '',
    port          integer NOT NULL DEFAULT 0,
    osname        text NOT NULL DEFAULT '',
    osversion     text NOT NULL DEFAULT '',
    boottime      timestamptz,
    numcpu        integer NOT NULL DEFAULT 0,
    loadavg       real NOT NULL DEFAULT 0,
    availmemory   real NOT NULL DEFAULT 0,           -- GB free
    availdisk     real NOT NULL DEFAULT 0,           -- GB free
    version       text NOT NULL DEFAULT '',
    profile       text NOT NULL DEFAULT '',
    provides      text[] NOT NULL DEFAULT '{}',
    nimby         text NOT NULL DEFAULT '',          -- '' open, '1' closed, else allowed user
    starttime     timestamptz,
    numslots      integer NOT NULL DEFAULT 1,
    slotsinuse    integer NOT NULL DEFAULT 0,
    udi           real NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT '',
    heartbeattime timestamptz,
    instanceid    integer NOT NULL DEFAULT 0,
    cleartime     timestamptz,                       -- delisted at
    gpulabel      text NOT NULL DEFAULT '',
    zone          text NOT NULL DEFAULT '',          -- dirmap zone
    metrics       jsonb NOT NULL DEFAULT '{}',
    UNIQUE (name, ipaddr, port)
);

CREATE INDEX blades_heartbeat_idx ON blades (heartbeattime);

-- One row per launch of a command.  The invocation (jid, cid, iid) is also
-- the fencing token: a report for an invocation that is no longer current,
-- or whose lease has passed to another, is ignored.
CREATE TABLE invocations (
    jid          bigint NOT NULL,
    tid          integer NOT NULL,
    cid          integer NOT NULL,
    iid          integer NOT NULL CHECK (iid > 0),
    current      boolean NOT NULL DEFAULT true,
    bladeid      uuid REFERENCES blades ON DELETE SET NULL,
    bladename    text NOT NULL DEFAULT '',
    numslots     integer NOT NULL DEFAULT 1,
    limits       text[] NOT NULL DEFAULT '{}',
    starttime    timestamptz NOT NULL DEFAULT now(),
    stoptime     timestamptz,
    leasetime    timestamptz,                        -- lease expiry; renewed by heartbeats
    pid          integer,
    rss          real NOT NULL DEFAULT 0,            -- GB
    vsz          real NOT NULL DEFAULT 0,            -- GB
    cpu          real NOT NULL DEFAULT 0,
    elapsedapp   double precision NOT NULL DEFAULT 0,
    elapsedsys   double precision NOT NULL DEFAULT 0,
    elapsedreal  double precision NOT NULL DEFAULT 0,
    rcode        integer,
    retrycount   integer NOT NULL DEFAULT 0,
    resumecount  integer NOT NULL DEFAULT 0,
    resumable    boolean NOT NULL DEFAULT false,
    recover      boolean NOT NULL DEFAULT false,     -- %r: launched as a resume
    PRIMARY KEY (jid, cid, iid),
    FOREIGN KEY (jid, cid) REFERENCES commands (jid, cid) ON DELETE CASCADE
);

CREATE INDEX invocations_active_idx ON invocations (leasetime) WHERE current AND stoptime IS NULL;
CREATE INDEX invocations_blade_idx ON invocations (bladeid) WHERE current AND stoptime IS NULL;

-- Command output as it streams in from blades, in order.
CREATE TABLE task_logs (
    jid     bigint NOT NULL,
    cid     integer NOT NULL,
    iid     integer NOT NULL,
    seq     integer NOT NULL,
    tid     integer NOT NULL,
    logtime timestamptz NOT NULL DEFAULT now(),
    text    text NOT NULL,
    PRIMARY KEY (jid, cid, iid, seq),
    FOREIGN KEY (jid, cid, iid) REFERENCES invocations (jid, cid, iid) ON DELETE CASCADE
);

CREATE TABLE notes (
    noteid   bigserial PRIMARY KEY,
    notetype text NOT NULL DEFAULT 'comment',
    noteuser text NOT NULL,
    notetime timestamptz NOT NULL DEFAULT now(),
    notetext text NOT NULL,
    itemtype text NOT NULL CHECK (itemtype IN ('job', 'task', 'blade')),
    itemid   text[] NOT NULL                          -- [jid], [jid, tid] or [blade name]
);

CREATE INDEX notes_item_idx ON notes (itemtype, itemid);
