"""SMTP submission: the relay applications send through with an API key as the password.

Messages accepted here go into the same ledger as API sends (``sending.service``), after
the same checks; ``250`` is answered only after the transaction that stored them commits.
``postyard.smtpd.smtp_role`` starts the listeners.
"""
