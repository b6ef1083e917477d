"""The notification sink's transports: the interface, retries, Slack webhooks and SMTP.

:mod:`~projections.notify.transport` defines what a transport is (a
:class:`~projections.notify.transport.Transport`: one channel, one ``send``) and how
its failures are classified and retried; :mod:`~projections.notify.slack` posts to a
Slack incoming webhook, :mod:`~projections.notify.smtp` hands mail to an SMTP server.
The consumer loop lives in :mod:`projections.notifications`.
"""
