"""The mail service as a user meets it: protocol probes, certificates, Postfix queues, daemons and the mail log."""
