// Generated from the node's OpenAPI document by `npm run api-types` (webui/scripts/api-types.mjs).
// Do not edit: change the API, then regenerate; `npm run api-types:check` fails when this is stale.

export interface paths {
    "/api/v1/audit": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Audit entries, oldest first, filtered and paged */
        get: operations["ApiV1AuditListEntries"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/audit/anchors": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The signed chain heads of a node held here */
        get: operations["ApiV1AuditAnchorsAnchors"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/audit/chain": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This node's chain: local check and hashes at seqs */
        get: operations["ApiV1AuditChainChain"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/audit/export": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Every matching entry as CSV or JSON (a download) */
        get: operations["ApiV1AuditExportExport"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/audit/verify": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Check a node's chain against the signed heads its peers hold */
        get: operations["ApiV1AuditVerifyVerify"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/auth/login": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Log in: sets the session cookie */
        post: operations["ApiV1AuthLoginLogin"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/auth/logout": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** End this session */
        post: operations["ApiV1AuthLogoutLogout"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/auth/sessions": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The caller's sessions on this node */
        get: operations["ApiV1AuthSessionsListSessions"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/auth/sessions/{session_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** End one of the caller's sessions */
        delete: operations["ApiV1AuthSessionsSessionIdRevokeSession"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/auth/whoami": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The caller, its role and permissions (and CSRF token for a session) */
        get: operations["ApiV1AuthWhoamiWhoami"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Cluster summary from replicated state; fresh=true also asks every member (2 s deadline) */
        get: operations["ApiV1ClusterSummary"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/authorities": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The nodes that may sign certificates */
        get: operations["ApiV1ClusterAuthoritiesListAuthorities"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/ca": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The cluster CA certificate (public) */
        get: operations["ApiV1ClusterCaClusterCa"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/certificates": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Every node certificate the cluster issued (the registry) and whether it is revoked */
        get: operations["ApiV1ClusterCertificatesListCertificates"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/internal/ca-key": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Internal: the CA key, for a designated authority (signed node call) */
        post: operations["ApiV1ClusterInternalCaKeySendCaKey"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/internal/join-token": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Internal: a short-lived join token for a PXE machine a member approved (signed node call) */
        post: operations["ApiV1ClusterInternalJoinTokenMachineToken"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/internal/renew": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Internal: renew the calling node's certificate (signed node call) */
        post: operations["ApiV1ClusterInternalRenewRenew"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/join": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Admit a new node (token-authenticated) */
        post: operations["ApiV1ClusterJoinJoin"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/cluster/join-tokens": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** A single-use token that lets one new node join (created on an authority node) */
        post: operations["ApiV1ClusterJoinTokensCreateJoinToken"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/docs": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This reference */
        get: operations["ApiV1DocsReference"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/metrics/targets": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Every live member's /metrics address, for Prometheus http_sd_configs */
        get: operations["ApiV1MetricsTargetsTargets"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/networks": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Overlay networks */
        get: operations["ApiV1NetworksListOverlays"];
        put?: never;
        /** Define an overlay network; every node creates it */
        post: operations["ApiV1NetworksCreateOverlay"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/networks/{name}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One overlay network */
        get: operations["ApiV1NetworksNameGetOverlay"];
        /** Change an overlay network (every node follows) */
        put: operations["ApiV1NetworksNameUpdateOverlay"];
        post?: never;
        /** Delete an overlay network; every node removes its links */
        delete: operations["ApiV1NetworksNameDeleteOverlay"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/node": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This node: identity, version, host facts */
        get: operations["ApiV1NodeGetNode"];
        /** Set this node's description and labels */
        put: operations["ApiV1NodePutNode"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Cluster members and their state */
        get: operations["ApiV1NodesListNodes"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One node's status, answered by that node (through any node) */
        get: operations["ApiV1NodesNameGetNode"];
        put?: never;
        post?: never;
        /** Remove a node: revoke its certificate everywhere */
        delete: operations["ApiV1NodesNameRemoveNode"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/history": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's CPU, memory, network and disk I/O over the last hour, day or week */
        get: operations["ApiV1NodesNameHistoryGetHistory"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/journal": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's journal entries: filters, cursor paging (newest first page, then before/after a cursor) */
        get: operations["ApiV1NodesNameJournalGetJournal"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/network": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's desired network configuration */
        get: operations["ApiV1NodesNameNetworkGetDesired"];
        /** Store a node's desired network configuration (applied by POST .../apply) */
        put: operations["ApiV1NodesNameNetworkPutDesired"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/network/apply": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Apply a configuration; rolled back unless confirmed within confirm_within */
        post: operations["ApiV1NodesNameNetworkApplyApply"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/network/confirm": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Keep the change in its confirm window */
        post: operations["ApiV1NodesNameNetworkConfirmConfirm"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/network/plan": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** What applying a configuration (default: the stored one) would change; changes nothing */
        post: operations["ApiV1NodesNameNetworkPlanPlan"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/network/rollback": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Undo the change in its confirm window now */
        post: operations["ApiV1NodesNameNetworkRollbackRollback"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/network/status": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's links, addresses, routes and counters, its configuration and confirm window */
        get: operations["ApiV1NodesNameNetworkStatusStatus"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/power": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Reboot or power off a node (it leaves the cluster first); confirm with its name */
        post: operations["ApiV1NodesNamePowerPowerNode"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/pxe": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's PXE boot server settings, with each machine's enrolment (never a token) */
        get: operations["ApiV1NodesNamePxeGetConfig"];
        /** Store and apply a node's PXE boot server settings (restarts dnsmasq if they changed) */
        put: operations["ApiV1NodesNamePxePutConfig"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/pxe/machines": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Machines that fetched a boot script from a node, most recent first */
        get: operations["ApiV1NodesNamePxeMachinesMachines"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/pxe/machines/{mac}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One machine that booted from a node, with the inventory it reported */
        get: operations["ApiV1NodesNamePxeMachinesMachine"];
        /** Name a machine: store its boot settings (name, extra arguments, fixed IP) */
        put: operations["ApiV1NodesNamePxeMachinesPutMachine"];
        post?: never;
        /** Forget a machine: its record, its inventory and its boot settings */
        delete: operations["ApiV1NodesNamePxeMachinesForgetMachine"];
        options?: never;
        head?: never;
        /** Change some of a machine's boot settings: absent fields are kept, null clears one */
        patch: operations["ApiV1NodesNamePxeMachinesPatchMachine"];
        trace?: never;
    };
    "/api/v1/nodes/{name}/pxe/machines/{mac}/approve": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Approve a machine waiting to enrol (optionally naming it): its next poll gets a join token */
        post: operations["ApiV1NodesNamePxeMachinesApproveApprove"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/pxe/machines/{mac}/refuse": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Refuse a machine's enrolment: it stays refused until it is forgotten */
        post: operations["ApiV1NodesNamePxeMachinesRefuseRefuse"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/timers": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's loaded timers with their last and next elapse (systemctl list-timers --all) */
        get: operations["ApiV1NodesNameTimersListTimers"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/unit-files": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's unit files and their enablement (systemctl list-unit-files), filtered */
        get: operations["ApiV1NodesNameUnitFilesListUnitFiles"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/units": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A node's loaded units (systemctl list-units --all), filtered */
        get: operations["ApiV1NodesNameUnitsListUnits"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/units/transient": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Run a one-off command as debvisor-run-NAME.service, now (waiting for its job) or by a timer */
        post: operations["ApiV1NodesNameUnitsTransientRunTransient"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/units/{unit}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One unit in detail: states, since, main PID, memory, CPU, tasks, restarts, dependencies */
        get: operations["ApiV1NodesNameUnitsShowUnit"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/units/{unit}/file": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A unit's file as systemd finds it, with its drop-ins (admin: unit files may hold secrets) */
        get: operations["ApiV1NodesNameUnitsFileReadFile"];
        /** Create or replace a service or timer, or one drop-in: verified, written atomically, reverted if the reload fails */
        put: operations["ApiV1NodesNameUnitsFileWriteFile"];
        post?: never;
        /** Revert: remove the unit's file of ours (or the drop-in named by `dropin`) and reload */
        delete: operations["ApiV1NodesNameUnitsFileRevertFile"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/nodes/{name}/units/{unit}/{action}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Act on a unit (start, stop, restart, reload, try-restart, reload-or-restart, kill, reset-failed, enable, disable, mask, unmask, preset); jobs are waited for and their result answered
         * @description 200 once systemd's job ended (its result in job_result: done, failed, timeout, canceled, dependency, skipped) or the action needed no job; 202 when the job was still running after a few seconds (job_result running). Protected units (the appliance, D-Bus, the journal, udev, an active systemd-networkd) refuse stop, kill, disable and mask with 409 unless an admin passes force.
         */
        post: operations["ApiV1NodesNameUnitsActionAct"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/pxe/enrol": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** A PXE-booted machine presents its single-use enrolment credential */
        post: operations["ApiV1PxeEnrolEnrol"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/pxe/enrol/poll": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** A waiting machine asks whether it was approved (its join token, once, if so) */
        post: operations["ApiV1PxeEnrolPollPoll"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/tokens": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The caller's API tokens (all=true: everyone's, admin) */
        get: operations["ApiV1TokensListTokens"];
        put?: never;
        /** Create an API token; its secret is shown only in this answer */
        post: operations["ApiV1TokensCreateToken"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/tokens/{token_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Revoke a token */
        delete: operations["ApiV1TokensTokenIdRevokeToken"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/users": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List users */
        get: operations["ApiV1UsersListUsers"];
        put?: never;
        /** Create a user */
        post: operations["ApiV1UsersCreateUser"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/users/{name}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One user */
        get: operations["ApiV1UsersNameGetUser"];
        put?: never;
        post?: never;
        /** Delete a user, their tokens and sessions */
        delete: operations["ApiV1UsersNameDeleteUser"];
        options?: never;
        head?: never;
        /** Change role or enable */
        patch: operations["ApiV1UsersNameUpdateUser"];
        trace?: never;
    };
    "/api/v1/users/{name}/password": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Change a password (one's own with the current one; anyone's as admin) */
        post: operations["ApiV1UsersNamePasswordChangePassword"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Liveness: the process is up and answering */
        get: operations["HealthzHealthz"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prometheus metrics */
        get: operations["MetricsMetrics"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Readiness of each subsystem; 503 until all are ready */
        get: operations["ReadyzReadyz"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** Alive */
        Alive: {
            /** @default ok */
            status: string;
        };
        /**
         * Approval
         * @description The optional body of `POST .../approve`: the node name the machine joins under (stored in
         *         its settings; default: the name there, else pxe-<its MAC>).
         */
        Approval: {
            /** @default null */
            name: string | null;
        };
        /** AuditEntry */
        AuditEntry: {
            action: string;
            /** @default  */
            credential: string;
            detail: string;
            /** @default  */
            forwarded_by: string;
            hash: string;
            node: string;
            outcome: string;
            prev_hash: string;
            seq: number;
            source: string;
            target: string;
            ts: number;
            user: string;
        };
        /** AuditPage */
        AuditPage: {
            entries: components["schemas"]["AuditEntry"][];
            next_after: number | null;
            unreachable?: string[];
        };
        /** AuthorityView */
        AuthorityView: {
            designated_at: number;
            designated_by: string;
            holds_key: boolean;
            name: string;
            /** @default  */
            requested_by: string;
        };
        /** Bond */
        Bond: {
            /** @default [] */
            addresses: string[];
            /** @default [] */
            interfaces: string[];
            /** @enum {null|string} */
            lacp_rate?: "slow" | "fast" | null;
            miimon?: number | null;
            /**
             * @default active-backup
             * @enum {string}
             */
            mode: "balance-rr" | "active-backup" | "balance-xor" | "broadcast" | "802.3ad" | "balance-tlb" | "balance-alb";
            mtu?: number | null;
            name: string;
            primary?: string | null;
            /** @default [] */
            routes: components["schemas"]["Route"][];
            /** @default true */
            up: boolean;
            /** @enum {null|string} */
            xmit_hash_policy?: "layer2" | "layer3+4" | "layer2+3" | "encap2+3" | "encap3+4" | "vlan+srcmac" | null;
        };
        /** Bridge */
        Bridge: {
            /** @default [] */
            addresses: string[];
            mtu?: number | null;
            name: string;
            /** @default [] */
            ports: components["schemas"]["BridgePort"][];
            /** @default 1 */
            pvid: number | null;
            /** @default [] */
            routes: components["schemas"]["Route"][];
            /** @default false */
            stp: boolean;
            /** @default true */
            up: boolean;
            /** @default false */
            vlan_filtering: boolean;
            /** @default [] */
            vlans: number[];
        };
        /** BridgePort */
        BridgePort: {
            name: string;
            /** @default 1 */
            pvid: number | null;
            /** @default [] */
            vlans: number[];
        };
        /** CaInfo */
        CaInfo: {
            ca_pem: string;
            fingerprint: string;
        };
        /** CaKeyAnswer */
        CaKeyAnswer: {
            ca_key_pem: string;
            designation?: components["schemas"]["Designation"] | null;
        };
        /** CertificateView */
        CertificateView: {
            fingerprint: string;
            issued_at: number;
            issued_by: string;
            name: string;
            not_after: number;
            revoked: boolean;
            serial: string;
        };
        /** ChainCheck */
        ChainCheck: {
            anchored_seq: number;
            anchors: number;
            checked_by: string;
            entries: number;
            findings: components["schemas"]["Finding"][];
            holders: string[];
            intact: boolean;
            last_seq: number;
            node: string;
            reason: string;
            rejected: number;
            unreachable: string[];
        };
        /** ChainFacts */
        ChainFacts: {
            bad_seq?: number | null;
            entries: number;
            hashes?: {
                [key: string]: string;
            };
            head: string;
            last_seq: number;
            node: string;
            /** @default  */
            reason: string;
        };
        /** Check */
        Check: {
            /** @default  */
            detail: string;
            ready: boolean;
        };
        /** ClusterSummary */
        ClusterSummary: {
            answered_by: string;
            cluster_id: string;
            facts?: {
                [key: string]: components["schemas"]["NodeFacts"];
            };
            fresh?: components["schemas"]["FreshAnswer"][] | null;
            members: components["schemas"]["NodeMember"][];
            states: {
                [key: string]: number;
            };
            totals: components["schemas"]["Totals"];
            versions: {
                [key: string]: number;
            };
        };
        /** ConfigEntry */
        ConfigEntry: {
            /** @default false */
            deleted: boolean;
            key: string;
            kind: string;
            value: string;
            version: string;
        };
        /** Cpu */
        Cpu: {
            count: number;
            model: string;
        };
        /** Designation */
        Designation: {
            at: number;
            by: string;
            /** @default false */
            holds_key: boolean;
            /** @default  */
            requested_by: string;
            /** @default  */
            signature: string;
        };
        /** Disk */
        Disk: {
            free_bytes: number;
            path: string;
            total_bytes: number;
        };
        /** DiskInfo */
        DiskInfo: {
            /** @default  */
            model: string;
            name: string;
            rotational?: boolean | null;
            /** @default  */
            serial: string;
            size_bytes: number;
        };
        /**
         * DmiInfo
         * @default {
         *       "product": "",
         *       "serial": "",
         *       "uuid": "",
         *       "vendor": ""
         *     }
         */
        DmiInfo: {
            /** @default  */
            product: string;
            /** @default  */
            serial: string;
            /** @default  */
            uuid: string;
            /** @default  */
            vendor: string;
        };
        /** DropIn */
        DropIn: {
            content: string;
            name: string;
            path: string;
        };
        /** EnlistedMachine */
        EnlistedMachine: {
            boots: number;
            enlisted_at: number | null;
            enrolment?: components["schemas"]["EnrolmentView"] | null;
            first_seen: number;
            hardware: components["schemas"]["HardwareSummary"] | null;
            ip: string;
            last_seen: number;
            mac: string;
            name: string | null;
            /** @enum {string} */
            state: "unknown" | "known" | "enlisted" | "pending" | "approved" | "refused" | "expired" | "joined";
        };
        /** EnlistedMachineDetail */
        EnlistedMachineDetail: {
            booted_name: string | null;
            boots: number;
            enlisted_at: number | null;
            enrolment?: components["schemas"]["EnrolmentView"] | null;
            first_seen: number;
            hardware: components["schemas"]["HardwareSummary"] | null;
            inventory: components["schemas"]["Inventory"] | null;
            ip: string;
            last_seen: number;
            mac: string;
            name: string | null;
            /** @enum {string} */
            state: "unknown" | "known" | "enlisted" | "pending" | "approved" | "refused" | "expired" | "joined";
        };
        /** EnrolAnswer */
        EnrolAnswer: {
            poll_seconds: number;
            poll_secret: string;
            state: string;
        };
        /**
         * EnrolRequest
         * @description `POST /api/v1/pxe/enrol`: the credential's id and secret, and who presents it.
         */
        EnrolRequest: {
            id: string;
            mac: string;
            secret: string;
            /** @default null */
            serial: string | null;
        };
        /** EnrolmentView */
        EnrolmentView: {
            decided_at: number | null;
            decided_by: string | null;
            ip: string | null;
            name: string | null;
            requested_at: number | null;
            serial: string | null;
            state: ("offered" | "pending" | "approved" | "issued" | "refused") | "expired";
            token_expires_at: number | null;
            token_id: string | null;
            waiting?: string | null;
        };
        /** EvidenceRecord */
        EvidenceRecord: {
            got: string;
            held: string;
            kind: string;
        };
        /**
         * FieldError
         * @description One invalid input: where it is (a JSON path such as `$.labels.rack`) and what is wrong.
         */
        FieldError: {
            message: string;
            path: string;
        };
        /** Finding */
        Finding: {
            detail: string;
            /** @enum {string} */
            kind: "broken" | "truncated" | "rewritten" | "regressed" | "forked";
            peers: string[];
            seq: number;
        };
        /** FreshAnswer */
        FreshAnswer: {
            answered: boolean;
            /** @default  */
            detail: string;
            name: string;
            seconds: number;
        };
        /** HardwareSummary */
        HardwareSummary: {
            cpu_count: number;
            disk_bytes: number;
            disks: number;
            memory_bytes: number;
            product: string;
            vendor: string;
            version: string;
        };
        /** HeldAnchors */
        HeldAnchors: {
            evidence?: components["schemas"]["EvidenceRecord"][];
            heads: string[];
            holder: string;
            node: string;
        };
        /** History */
        History: {
            node: string;
            range: string;
            series: components["schemas"]["Series"][];
            step: number;
            times: number[];
        };
        /** InterfaceAddress */
        InterfaceAddress: {
            address: string;
            /** @enum {string} */
            family: "inet" | "inet6";
            interface: string;
            prefix_len: number;
            /** @enum {string} */
            scope: "global" | "link" | "host" | "site" | "other";
        };
        /** Inventory */
        Inventory: {
            /** @default 0 */
            cpu_count: number;
            /** @default  */
            cpu_model: string;
            disks?: components["schemas"]["DiskInfo"][];
            dmi?: components["schemas"]["DmiInfo"];
            /** @default 0 */
            memory_bytes: number;
            /** @default  */
            name: string;
            nics?: components["schemas"]["NicInfo"][];
            /** @default  */
            version: string;
        };
        /** JoinRequest */
        JoinRequest: {
            api_address: string;
            csr_pem: string;
            gossip_address: string;
            name: string;
            secret: string;
            token_id: string;
        };
        /** JoinResponse */
        JoinResponse: {
            ca_cert_pem: string;
            cluster_id: string;
            config: components["schemas"]["ConfigEntry"][];
            gossip_seeds: string[];
            node_cert_pem: string;
        };
        /** JoinTokenCreated */
        JoinTokenCreated: {
            expires_at: number;
            id: string;
            /** @default  */
            issuer: string;
            token: string;
        };
        /** JoinTokensPost */
        JoinTokensPost: {
            /** @default 10800 */
            ttl_seconds: number;
        };
        /** JournalEntry */
        JournalEntry: {
            boot: string;
            cursor: string;
            hostname?: string | null;
            identifier?: string | null;
            message: string;
            pid?: number | null;
            priority?: number | null;
            time: number;
            transport?: string | null;
            /** @default false */
            truncated: boolean;
            unit?: string | null;
        };
        /** JournalPage */
        JournalPage: {
            entries: components["schemas"]["JournalEntry"][];
            more: boolean;
        };
        /**
         * LinkCounters
         * @default {
         *       "rx_bytes": 0,
         *       "rx_dropped": 0,
         *       "rx_errors": 0,
         *       "rx_packets": 0,
         *       "tx_bytes": 0,
         *       "tx_dropped": 0,
         *       "tx_errors": 0,
         *       "tx_packets": 0
         *     }
         */
        LinkCounters: {
            /** @default 0 */
            rx_bytes: number;
            /** @default 0 */
            rx_dropped: number;
            /** @default 0 */
            rx_errors: number;
            /** @default 0 */
            rx_packets: number;
            /** @default 0 */
            tx_bytes: number;
            /** @default 0 */
            tx_dropped: number;
            /** @default 0 */
            tx_errors: number;
            /** @default 0 */
            tx_packets: number;
        };
        /** LinkState */
        LinkState: {
            addresses?: string[];
            counters?: components["schemas"]["LinkCounters"];
            index: number;
            kind: string;
            mac: string;
            master?: string | null;
            mtu: number;
            name: string;
            operstate: string;
            up: boolean;
        };
        /** LoginRequest */
        LoginRequest: {
            password: string;
            username: string;
        };
        /** MachinePatch */
        MachinePatch: {
            extra?: string[] | null;
            ip?: string | null;
            name?: string | null;
        };
        /** MachinePut */
        MachinePut: {
            extra?: string[];
            ip?: string | null;
            name: string;
        };
        /** MachineSettings */
        MachineSettings: {
            extra: string[];
            ip: string | null;
            mac: string;
            name: string | null;
        };
        /**
         * MachineTokenRequest
         * @description Ask an authority for a machine's join token (the caller is the boot server node).
         */
        MachineTokenRequest: {
            approver: string;
            mac: string;
        };
        /** Memory */
        Memory: {
            available_bytes: number;
            total_bytes: number;
        };
        /**
         * Mode
         * @description PROXY answers only PXE beside the site's DHCP server; FULL leases addresses itself.
         * @default proxy
         * @enum {string}
         */
        Mode: "proxy" | "full";
        /** NetworkApplied */
        NetworkApplied: {
            actions: string[];
            confirm_within: number;
            deadline: number;
            id: string;
            node: string;
        };
        /** NetworkApplyPost */
        NetworkApplyPost: {
            check?: string | null;
            config?: components["schemas"]["NetworkConfig"] | null;
            /**
             * @description seconds until the change is rolled back unless confirmed
             * @default 120
             */
            confirm_within: number;
        };
        /** NetworkConfig */
        NetworkConfig: {
            /** @default [] */
            bonds: components["schemas"]["Bond"][];
            /** @default [] */
            bridges: components["schemas"]["Bridge"][];
            /** @default [] */
            nics: components["schemas"]["Nic"][];
            /** @default [] */
            vlans: components["schemas"]["Vlan"][];
            /** @default [] */
            vxlans: components["schemas"]["Vxlan"][];
        };
        /** NetworkOutcome */
        NetworkOutcome: {
            actions?: string[];
            node: string;
            /** @enum {string} */
            result: "confirmed" | "rolled-back";
        };
        /** NetworkPlan */
        NetworkPlan: {
            actions: string[];
            node: string;
        };
        /** NetworkPlanPost */
        NetworkPlanPost: {
            config?: components["schemas"]["NetworkConfig"] | null;
        };
        /** NetworkStatus */
        NetworkStatus: {
            applied: components["schemas"]["NetworkConfig"] | null;
            deadline: number | null;
            desired: components["schemas"]["NetworkConfig"] | null;
            last_outcome: components["schemas"]["Outcome"] | null;
            links: components["schemas"]["LinkState"][];
            node: string;
            overlays?: components["schemas"]["OverlayState"][];
            pending: components["schemas"]["NetworkConfig"] | null;
            remaining: number | null;
            routes: components["schemas"]["RouteState"][];
            startup: string;
        };
        /** Nic */
        Nic: {
            /** @default [] */
            addresses: string[];
            mac: string;
            mtu?: number | null;
            name: string;
            /** @default [] */
            routes: components["schemas"]["Route"][];
            /** @default true */
            up: boolean;
        };
        /** NicInfo */
        NicInfo: {
            link?: boolean | null;
            /** @description aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff */
            mac: string;
            name: string;
            speed_mbps?: number | null;
        };
        /** Node */
        Node: {
            addresses: components["schemas"]["InterfaceAddress"][];
            cluster_id: string;
            cpu: components["schemas"]["Cpu"];
            description: string;
            disk: components["schemas"]["Disk"];
            kernel: string;
            labels: {
                [key: string]: string;
            };
            memory: components["schemas"]["Memory"];
            name: string;
            node_id: string;
            started_at: number;
            uptime_seconds: number;
            version: string;
        };
        /** NodeFacts */
        NodeFacts: {
            addresses: components["schemas"]["InterfaceAddress"][];
            cpu: components["schemas"]["Cpu"];
            description: string;
            disk: components["schemas"]["Disk"];
            kernel: string;
            labels: {
                [key: string]: string;
            };
            memory: components["schemas"]["Memory"];
            published_at: number;
            started_at: number;
            version: string;
        };
        /** NodeMember */
        NodeMember: {
            api_address: string;
            gossip_address: string;
            incarnation: number;
            last_change: number;
            name: string;
            state: string;
            version: string;
        };
        /** NodePut */
        NodePut: {
            /** @default  */
            description: string;
            labels?: {
                [key: string]: string;
            };
        };
        /** Outcome */
        Outcome: {
            id: string;
            /** @default  */
            reason: string;
            /** @enum {string} */
            result: "confirmed" | "rolled-back";
        };
        /** Overlay */
        Overlay: {
            bridge: string;
            created_at: number;
            mtu: number;
            name: string;
            port: number;
            underlay: string | null;
            updated_at: number;
            vni: number;
            vxlan: string;
        };
        /** OverlayPut */
        OverlayPut: {
            /** @description a Linux interface name, at most 15 characters */
            bridge: string;
            /** @default 1450 */
            mtu: number;
            /** @default 4789 */
            port: number;
            underlay?: string | null;
            vni: number;
        };
        /** OverlayState */
        OverlayState: {
            bridge: string;
            /** @default  */
            error: string;
            local: string | null;
            name: string;
            peers: string[];
            vni: number;
            vxlan: string;
        };
        /** OverlaysPost */
        OverlaysPost: {
            /** @description a Linux interface name, at most 15 characters */
            bridge: string;
            /** @default 1450 */
            mtu: number;
            /** @description lowercase, at most 32 characters */
            name: string;
            /** @default 4789 */
            port: number;
            underlay?: string | null;
            vni: number;
        };
        /** PasswordChange */
        PasswordChange: {
            current_password?: string | null;
            /** @description at least 12 characters */
            new_password: string;
        };
        /** PasswordChanged */
        PasswordChanged: {
            session?: components["schemas"]["SessionCreated"] | null;
            sessions_ended: number;
            user: string;
        };
        /** PollAnswer */
        PollAnswer: {
            join_token?: string | null;
            name?: string | null;
            poll_seconds: number;
            state: string;
            waiting?: string | null;
        };
        /**
         * PollRequest
         * @description `POST /api/v1/pxe/enrol/poll`.
         */
        PollRequest: {
            mac: string;
            poll_secret: string;
        };
        /** PowerAccepted */
        PowerAccepted: {
            action: string;
            job: string;
            node: string;
            target: string;
        };
        /** PowerPost */
        PowerPost: {
            /** @enum {string} */
            action: "reboot" | "poweroff";
            confirm: string;
            reason: string;
        };
        /**
         * Problem
         * @description An RFC 9457 problem document; every error the API answers is one.
         */
        ProblemDetails: {
            /** @default null */
            detail: string | null;
            /** @default null */
            errors: components["schemas"]["FieldError"][] | null;
            /** @default null */
            instance: string | null;
            status: number;
            title: string;
            type: string;
        };
        /** PxeMachine */
        PxeMachine: {
            extra?: string[];
            ip?: string | null;
            name?: string | null;
        };
        /** PxeSettingsView */
        PxeSettingsView: {
            /** @default false */
            approve_all: boolean;
            approve_macs?: string[];
            approve_serials?: string[];
            /** @default 1800 */
            credential_seconds: number;
            /** @default false */
            enabled: boolean;
            enrolments?: {
                [key: string]: components["schemas"]["EnrolmentView"];
            };
            http_url?: string | null;
            interface?: string | null;
            ipv6_prefix?: string | null;
            /** @default 3600 */
            lease_seconds: number;
            machines?: {
                [key: string]: components["schemas"]["PxeMachine"];
            };
            mode?: components["schemas"]["Mode"];
            network?: string | null;
            /** @default false */
            only_known: boolean;
            range_end?: string | null;
            range_start?: string | null;
        };
        /** ReadinessReport */
        ReadinessReport: {
            checks: {
                [key: string]: components["schemas"]["Check"];
            };
            ready: boolean;
        };
        /** RenewAnswer */
        RenewAnswer: {
            node_cert_pem: string;
        };
        /**
         * RenewRequest
         * @description Ask an authority for a new certificate for the calling node's key and name.
         */
        RenewRequest: {
            addresses: string[];
        };
        /**
         * Role
         * @enum {string}
         */
        Role: "admin" | "operator" | "viewer" | "developer";
        /** Route */
        Route: {
            metric?: number | null;
            to: string;
            via?: string | null;
        };
        /** RouteState */
        RouteState: {
            dev: string | null;
            metric?: number | null;
            /** @default  */
            protocol: string;
            to: string;
            via?: string | null;
        };
        /** Series */
        Series: {
            avg: (number | null)[];
            max?: (number | null)[] | null;
            name: string;
            unit: string;
        };
        /** SessionCreated */
        SessionCreated: {
            csrf_token: string;
            expires_at: number;
            idle_timeout_seconds: number;
            must_change_password: boolean;
            role: components["schemas"]["Role"];
            session_id: string;
            user: string;
        };
        /** SessionInfo */
        SessionInfo: {
            created_at: number;
            current: boolean;
            id: string;
            last_seen: number;
            source: string;
            user_agent: string;
        };
        /** TargetGroup */
        TargetGroup: {
            labels: {
                [key: string]: string;
            };
            targets: string[];
        };
        /** Timer */
        Timer: {
            active_state: string;
            last: number | null;
            /** @default  */
            last_result: string;
            name: string;
            next: number | null;
            sub_state: string;
            unit: string;
        };
        /** Token */
        Token: {
            created_at: number;
            expires_at: number | null;
            id: string;
            last_used: number | null;
            name: string;
            owner: string;
            role: components["schemas"]["Role"];
        };
        /** TokenCreated */
        TokenCreated: {
            secret: string;
            token: components["schemas"]["Token"];
        };
        /** TokensPost */
        TokensPost: {
            expires_in_seconds?: number | null;
            name: string;
            role?: components["schemas"]["Role"] | null;
        };
        /** Totals */
        Totals: {
            cpus: number;
            memory_bytes: number;
            nodes: number;
        };
        /** TransientResult */
        TransientResult: {
            active_state?: string | null;
            exit_status?: number | null;
            job: string;
            result?: string | null;
            timer?: string | null;
            unit: string;
        };
        /** TransientRun */
        TransientRun: {
            command: string[];
            description?: string | null;
            name: string;
            on_active_sec?: number | null;
            on_calendar?: string | null;
            /** @default 60 */
            wait_seconds: number;
        };
        /** Unit */
        Unit: {
            active_state: string;
            description: string;
            /** @default  */
            following: string;
            /** @default  */
            job: string;
            load_state: string;
            name: string;
            sub_state: string;
        };
        /**
         * UnitActionPost
         * @description The optional body of `POST .../units/{unit}/{action}`.
         */
        UnitActionPost: {
            /** @default false */
            force: boolean;
            /**
             * @default replace
             * @enum {unknown}
             */
            mode: "fail" | "ignore-dependencies" | "ignore-requirements" | "replace";
            /** @default null */
            signal: string | number | null;
            /**
             * @default all
             * @enum {unknown}
             */
            who: "all" | "control" | "main";
        };
        /** UnitActionResult */
        UnitActionResult: {
            action: string;
            active_state: string;
            changes: components["schemas"]["types_UnitFileChange"][];
            job: string;
            /** @enum {string} */
            job_result: "done" | "failed" | "timeout" | "canceled" | "dependency" | "skipped" | "running" | "";
            load_state: string;
            result: string;
            seconds: number;
            sub_state: string;
            unit: string;
            unit_file_state: string;
        };
        /** UnitDetails */
        UnitDetails: {
            active_state: string;
            after: string[];
            before: string[];
            conflicts: string[];
            cpu_seconds: number | null;
            description: string;
            drop_in_paths: string[];
            fragment_path: string;
            job: string;
            load_state: string;
            main_pid: number | null;
            memory_bytes: number | null;
            name: string;
            part_of: string[];
            protected: boolean;
            required_by: string[];
            requires: string[];
            restarts: number | null;
            result: string;
            since: number | null;
            sub_state: string;
            tasks: number | null;
            triggered_by: string[];
            triggers: string[];
            unit_file_preset: string;
            unit_file_state: string;
            wanted_by: string[];
            wants: string[];
        };
        /** UnitFile */
        UnitFile: {
            name: string;
            path: string;
            state: string;
        };
        /** UnitFilePut */
        UnitFilePut: {
            content: string;
            dropin?: string | null;
        };
        /** UnitFileView */
        UnitFileView: {
            content: string | null;
            dropins: components["schemas"]["DropIn"][];
            path: string | null;
            shipped: boolean;
            unit: string;
        };
        /** User */
        User: {
            created_at: number;
            enabled: boolean;
            must_change_password: boolean;
            name: string;
            role: components["schemas"]["Role"];
            updated_at: number;
        };
        /** UserPatch */
        UserPatch: {
            enabled?: boolean | null;
            role?: components["schemas"]["Role"] | null;
        };
        /** UsersPost */
        UsersPost: {
            /** @default true */
            enabled: boolean;
            /** @description lowercase login name, at most 32 characters */
            name: string;
            /** @description at least 12 characters */
            password: string;
            role: components["schemas"]["Role"];
        };
        /** Vlan */
        Vlan: {
            /** @default [] */
            addresses: string[];
            id: number;
            link: string;
            mtu?: number | null;
            name: string;
            /** @default [] */
            routes: components["schemas"]["Route"][];
            /** @default true */
            up: boolean;
        };
        /** Vxlan */
        Vxlan: {
            /** @default [] */
            addresses: string[];
            dev?: string | null;
            group?: string | null;
            /** @default false */
            learning: boolean;
            local?: string | null;
            mtu?: number | null;
            name: string;
            /** @default [] */
            peers: string[];
            /** @default 4789 */
            port: number;
            /** @default [] */
            routes: components["schemas"]["Route"][];
            /** @default true */
            up: boolean;
            vni: number;
        };
        /** Whoami */
        Whoami: {
            csrf_token?: string | null;
            must_change_password: boolean;
            permissions: string[];
            role: components["schemas"]["Role"];
            user: string;
            /** @enum {string} */
            via: "session" | "token" | "forwarded";
        };
        /** UnitFileChange */
        types_UnitFileChange: {
            destination: string;
            file: string;
            type: string;
        };
        /** UnitFileChange */
        unitfiles_UnitFileChange: {
            action: string;
            diff: string;
            load_state?: string | null;
            path: string;
            unit: string;
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    ApiV1AuditListEntries: {
        parameters: {
            query?: {
                /** @description all: merge every member's log; a name: that node's */
                node?: string | null;
                user?: string | null;
                /** @description exact, or a prefix ending in . or * */
                action?: string | null;
                since?: string | null;
                until?: string | null;
                /** @description return entries after this seq */
                after?: number;
                limit?: number;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AuditPage"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuditAnchorsAnchors: {
        parameters: {
            query: {
                node: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HeldAnchors"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuditChainChain: {
        parameters: {
            query?: {
                /** @description comma-separated sequence numbers */
                seqs?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ChainFacts"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuditExportExport: {
        parameters: {
            query?: {
                format?: "csv" | "json";
                user?: string | null;
                action?: string | null;
                since?: string | null;
                until?: string | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": unknown;
                    "text/csv": string;
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuditVerifyVerify: {
        parameters: {
            query?: {
                /** @description the node whose chain to check (default: this one) */
                node?: string | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ChainCheck"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuthLoginLogin: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["LoginRequest"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionCreated"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuthLogoutLogout: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuthSessionsListSessions: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionInfo"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuthSessionsSessionIdRevokeSession: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1AuthWhoamiWhoami: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Whoami"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterSummary: {
        parameters: {
            query?: {
                fresh?: boolean;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ClusterSummary"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterAuthoritiesListAuthorities: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AuthorityView"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterCaClusterCa: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CaInfo"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterCertificatesListCertificates: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CertificateView"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterInternalCaKeySendCaKey: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CaKeyAnswer"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterInternalJoinTokenMachineToken: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["MachineTokenRequest"];
            };
        };
        responses: {
            /** @description Document created, URL follows */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["JoinTokenCreated"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterInternalRenewRenew: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RenewRequest"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RenewAnswer"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterJoinJoin: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["JoinRequest"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["JoinResponse"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1ClusterJoinTokensCreateJoinToken: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["JoinTokensPost"];
            };
        };
        responses: {
            /** @description Additional response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["JoinTokenCreated"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1DocsReference: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/html": string;
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1MetricsTargetsTargets: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TargetGroup"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NetworksListOverlays: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Overlay"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NetworksCreateOverlay: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["OverlaysPost"];
            };
        };
        responses: {
            /** @description Document created, URL follows */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Overlay"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NetworksNameGetOverlay: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Overlay"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NetworksNameUpdateOverlay: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["OverlayPut"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Overlay"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NetworksNameDeleteOverlay: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodeGetNode: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Node"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodePutNode: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NodePut"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Node"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesListNodes: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NodeMember"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameGetNode: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Node"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameRemoveNode: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameHistoryGetHistory: {
        parameters: {
            query?: {
                /** @description comma-separated: cpu, memory, net, disk (default: all) */
                metrics?: string;
                /** @description 1h: 5 s buckets; 1d: 1 min; 1w: 10 min */
                range?: "1h" | "1d" | "1w";
            };
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["History"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameJournalGetJournal: {
        parameters: {
            query?: {
                /** @description a unit's name (its own and systemd's lines about it) */
                unit?: string | null;
                /** @description a syslog identifier (systemd-cat -t ...) */
                identifier?: string | null;
                /** @description ISO 8601, epoch seconds, or -30m/-2h/-1d */
                since?: string | null;
                /** @description as since */
                until?: string | null;
                /** @description 0-7 or emerg..debug: this and more important */
                priority?: string | null;
                /** @description 0 (this boot), -1, ... or a boot id */
                boot?: string | null;
                /** @description text the message contains (any case) */
                match?: string | null;
                /** @description a cursor: the entries after it */
                after?: string | null;
                /** @description a cursor: the entries before it */
                before?: string | null;
                /** @description entries per page, 1-1000 (default 100) */
                limit?: string | null;
            };
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["JournalPage"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkGetDesired: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkConfig"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkPutDesired: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NetworkConfig"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkConfig"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkApplyApply: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NetworkApplyPost"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkApplied"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkConfirmConfirm: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkOutcome"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkPlanPlan: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NetworkPlanPost"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkPlan"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkRollbackRollback: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkOutcome"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameNetworkStatusStatus: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NetworkStatus"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePowerPowerNode: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PowerPost"];
            };
        };
        responses: {
            /** @description Additional response */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PowerAccepted"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeGetConfig: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PxeSettingsView"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxePutConfig: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PxeSettingsView"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PxeSettingsView"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesMachines: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EnlistedMachine"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesMachine: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                mac: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EnlistedMachineDetail"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesPutMachine: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                mac: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["MachinePut"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MachineSettings"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesForgetMachine: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                mac: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesPatchMachine: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                mac: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["MachinePatch"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MachineSettings"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesApproveApprove: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                mac: string;
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["Approval"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EnrolmentView"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNamePxeMachinesRefuseRefuse: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                mac: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EnrolmentView"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameTimersListTimers: {
        parameters: {
            query?: {
                /** @description a shell glob on the unit name: ssh*, *@*.service */
                pattern?: string | null;
            };
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Timer"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitFilesListUnitFiles: {
        parameters: {
            query?: {
                /** @description unit types (comma-separated alternatives): service,timer */
                type?: string | null;
                /** @description unit-file states (comma-separated alternatives): enabled,masked */
                state?: string | null;
                /** @description a shell glob on the unit name: ssh*, *@*.service */
                pattern?: string | null;
            };
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UnitFile"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsListUnits: {
        parameters: {
            query?: {
                /** @description unit types (comma-separated alternatives): service,timer */
                type?: string | null;
                /** @description load states (comma-separated alternatives): loaded,not-found */
                load?: string | null;
                /** @description active states (comma-separated alternatives): active,failed */
                active?: string | null;
                /** @description sub states (comma-separated alternatives): running,exited */
                sub?: string | null;
                /** @description a shell glob on the unit name: ssh*, *@*.service */
                pattern?: string | null;
            };
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Unit"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsTransientRunTransient: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TransientRun"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransientResult"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsShowUnit: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                unit: string;
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UnitDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsFileReadFile: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                unit: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UnitFileView"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsFileWriteFile: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                unit: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["UnitFilePut"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["unitfiles_UnitFileChange"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsFileRevertFile: {
        parameters: {
            query?: {
                dropin?: string | null;
            };
            header?: never;
            path: {
                name: string;
                unit: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["unitfiles_UnitFileChange"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1NodesNameUnitsActionAct: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                unit: string;
                action: string;
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["UnitActionPost"];
            };
        };
        responses: {
            /** @description Additional response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UnitActionResult"];
                };
            };
            /** @description Additional response */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UnitActionResult"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Forwarded once already and still not at the named node */
            421: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Something other than the named node answered at its address */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node (or a subsystem) is down, has left or cannot be reached */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The named node did not answer in time */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1PxeEnrolEnrol: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["EnrolRequest"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EnrolAnswer"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Gone: the thing asked about expired */
            410: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1PxeEnrolPollPoll: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PollRequest"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PollAnswer"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Gone: the thing asked about expired */
            410: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1TokensListTokens: {
        parameters: {
            query?: {
                all?: boolean;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Token"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1TokensCreateToken: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TokensPost"];
            };
        };
        responses: {
            /** @description Document created, URL follows */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TokenCreated"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1TokensTokenIdRevokeToken: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                token_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1UsersListUsers: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["User"][];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1UsersCreateUser: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["UsersPost"];
            };
        };
        responses: {
            /** @description Document created, URL follows */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["User"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1UsersNameGetUser: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["User"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1UsersNameDeleteUser: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, nothing follows */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1UsersNameUpdateUser: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["UserPatch"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["User"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The change conflicts with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ApiV1UsersNamePasswordChangePassword: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PasswordChange"];
            };
        };
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PasswordChanged"];
                };
            };
            /** @description The body is not valid JSON (or a parameter the handler parses is malformed) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description No such resource (or, for a per-node route, no such node) */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The body is larger than the limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description The URL is longer than the HTTP server accepts (answered by it, without a body) */
            414: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description The body is not application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Well-formed but invalid; `errors` lists each bad field by JSON path */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    HealthzHealthz: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Alive"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    MetricsMetrics: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": string;
                };
            };
            /** @description No or bad credentials */
            401: {
                headers: {
                    /** @description The scheme to authenticate with */
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Authenticated but not permitted (role, CSRF token, a password to change first, or the route's own rule) */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description Too many requests; Retry-After says when to try again */
            429: {
                headers: {
                    /** @description Seconds to wait before trying again */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
        };
    };
    ReadyzReadyz: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Request fulfilled, document follows */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ReadinessReport"];
                };
            };
            /** @description A failure on the node; its log has the details */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["ProblemDetails"];
                };
            };
            /** @description a subsystem is not ready */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ReadinessReport"];
                };
            };
        };
    };
}
