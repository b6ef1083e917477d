"""The project's Salesforce clients.

The project's Salesforce clients: OAuth login, a simple-salesforce factory and the
CometD streaming client. They work the same against a real org and the simulator;
only the login URL, credentials and CA bundle differ.
"""
