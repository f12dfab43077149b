"""What the mail collector exports: each endpoint's probe, its certificate, Postfix's queues, the daemons, their
process limits and the mail log's errors."""

from __future__ import annotations

from hostvigil.collector import Metrics
from hostvigil.collectors.mail.outcome import PHASES, REASONS

_mail = Metrics("mail")

PART_UP = _mail.gauge(
    "part_up",
    "1 when a part of the mail collector could read what it reads this run, 0 when it could not (the agent's log "
    "says why once): probes (endpoints configured or discovered), queues (Postfix's queue directory), daemons "
    "(/proc), saturation (doveadm service status, master.cf, cyrus.conf), log (the mail log or the journal). "
    "The part's series are absent while it is 0, never zero.",
    "part",
)

# -- probes ---------------------------------------------------------------------------------------------------

ENDPOINT = _mail.gauge(
    "endpoint_info",
    "1 for each endpoint probed, with how it was found: config (listed in [collectors.mail] endpoints), listening "
    "(a socket on a standard mail port or an LMTP socket this host listens on), postfix or cyrus (an LMTP "
    "destination their configuration names).",
    "service", "endpoint", "found",
)
UP = _mail.gauge(
    "probe_up",
    "1 when the last probe of the endpoint went through every step configured for it (greeting, capabilities, "
    "TLS, the test account's login and mailbox, the test recipient), 0 when a step failed (see probe_failing). "
    "Absent until the first probe ends.",
    "service", "endpoint",
)
FAILING = _mail.gauge(
    "probe_failing",
    "1 for the reason the last probe of the endpoint failed, 0 for the others; all 0 when it is up. Reasons: "
    + ", ".join(REASONS) + ".",
    "service", "endpoint", "reason",
)
PROBES = _mail.counter("probes_total", "Probes of the endpoint that ended, since the agent started.",
                       "service", "endpoint")
FAILURES = _mail.counter(
    "probe_failures_total",
    "Probes of the endpoint that failed since the agent started, by reason (see probe_failing).",
    "service", "endpoint", "reason",
)
IN_A_ROW = _mail.gauge(
    "probe_failures_in_a_row",
    "Probes of the endpoint that failed since its last success: a service is counted down after fail_after of "
    "them, one lost packet is not an outage.",
    "service", "endpoint",
)
PHASE_SECONDS = _mail.gauge(
    "probe_phase_seconds",
    "Time the last probe spent in each step it reached: " + ", ".join(PHASES) + ". A step not configured or not "
    "reached is absent.",
    "service", "endpoint", "phase",
)
PHASE_OK = _mail.gauge(
    "probe_phase_ok",
    "1 for each step the last probe completed, 0 for the step it failed in: the deepest 1 is how far a client "
    "gets. Steps not configured or not reached are absent.",
    "service", "endpoint", "phase",
)
LAST = _mail.gauge("probe_timestamp_seconds", "When the last probe of the endpoint ended (Unix time).",
                   "service", "endpoint")
CERT_NOT_AFTER = _mail.gauge(
    "tls_cert_not_after_timestamp_seconds",
    "When the certificate the endpoint presented in its last TLS handshake expires (Unix time), also when it "
    "failed verification.",
    "service", "endpoint",
)
CERT_VERIFIED = _mail.gauge(
    "tls_cert_verified",
    "1 when the endpoint's certificate verified (a trusted chain, within its dates, for the name probed), 0 when "
    "not. Absent where tls_verify = false.",
    "service", "endpoint",
)
CERT_INFO = _mail.gauge(
    "tls_cert_info",
    "1, with the subject and issuer of the certificate the endpoint presented and the TLS version negotiated.",
    "service", "endpoint", "subject", "issuer", "version",
)

# -- Postfix's queues ---------------------------------------------------------------------------------------------

QUEUE_READABLE = _mail.gauge(
    "queue_readable",
    "1 when Postfix's queue (maildrop, incoming, active, deferred, hold, corrupt) could be read under "
    "queue_directory this run, 0 when not (the agent's log says why; its counts are then absent, never zero). "
    "The queues are 0700 postfix: the agent reads them as root.",
    "queue",
)
QUEUE_MESSAGES = _mail.gauge(
    "queue_messages",
    "Messages in Postfix's queue, counted from its directory (hashed subdirectories included), no command run.",
    "queue",
)
QUEUE_OLDEST = _mail.gauge(
    "queue_oldest_age_seconds",
    "Age of the oldest message in the queue, from the arrival time recorded in the queue file (deferred files' "
    "modification times are the next retry, not the arrival). Absent for an empty queue.",
    "queue",
)

# -- daemons and their limits ---------------------------------------------------------------------------------------

DAEMON_UP = _mail.gauge(
    "daemon_up",
    "1 when a master process of the mail daemon runs, 0 when none does, for each daemon expected here: those "
    "installed (Dovecot's, Postfix's or Cyrus's master binary present) or listed in [collectors.mail] daemons.",
    "daemon",
)
DAEMON_PROCESSES = _mail.gauge(
    "daemon_processes",
    "Processes of the mail daemon: its masters and everything running under them (login, imap, lmtp, smtpd, ...).",
    "daemon",
)
DAEMON_STARTED = _mail.gauge("daemon_start_time_seconds",
                             "When the mail daemon's oldest running master process started (Unix time).", "daemon")
DAEMON_RESTARTS = _mail.counter(
    "daemon_restarts_total",
    "Times the mail daemon's master was replaced by a new process (a new PID) since the agent started; a reload "
    "keeps the PID and does not count.",
    "daemon",
)
SERVICE_PROCESSES = _mail.gauge(
    "service_processes",
    "Processes of a service of the daemon (Dovecot: imap-login, imap, lmtp, auth, ... from doveadm service status; "
    "Postfix: each inet service of master.cf; Cyrus: each SERVICES entry of cyrus.conf).",
    "daemon", "service",
)
SERVICE_AVAILABLE = _mail.gauge(
    "service_processes_available",
    "Processes of the Dovecot service that can take another client (doveadm's process_avail): a login process "
    "in its performance mode serves many clients, so a service at its process limit with processes available is "
    "not full. Postfix's and Cyrus's processes serve one client each and have none.",
    "daemon", "service",
)
SERVICE_LIMIT = _mail.gauge(
    "service_process_limit",
    "The most processes the service may run (Dovecot's process_limit, Postfix's maxproc or default_process_limit, "
    "Cyrus's maxchild); absent where it has none. A service at its limit stops taking connections.",
    "daemon", "service",
)
SERVICE_PENDING = _mail.gauge(
    "service_listen_pending",
    "1 while connections wait in the Dovecot service's listen queue because no process can take them (doveadm's "
    "listen_pending): clients are about to time out.",
    "daemon", "service",
)

# -- the mail log ---------------------------------------------------------------------------------------------------

LOG_LINES = _mail.counter(
    "log_lines_total",
    "Warning, error, fatal and panic lines of the mail daemons (postfix, dovecot, cyrus) in the mail log or the "
    "journal since the agent started; lines written before it started are not counted.",
    "daemon", "level",
)
LOG_SKIPPED = _mail.counter(
    "log_skipped_bytes_total",
    "Bytes of the mail log passed over unread because more was written in one run than the agent reads (a flood "
    "costs these counts, not the host's CPU).",
)

METRICS = (
    PART_UP, ENDPOINT, UP, FAILING, PROBES, FAILURES, IN_A_ROW, PHASE_SECONDS, PHASE_OK, LAST, CERT_NOT_AFTER,
    CERT_VERIFIED, CERT_INFO, QUEUE_READABLE, QUEUE_MESSAGES, QUEUE_OLDEST, DAEMON_UP, DAEMON_PROCESSES,
    DAEMON_STARTED, DAEMON_RESTARTS, SERVICE_PROCESSES, SERVICE_AVAILABLE, SERVICE_LIMIT, SERVICE_PENDING,
    LOG_LINES, LOG_SKIPPED,
)
