"""The simulator's HTTP surface: one module per Salesforce API, plus the admin endpoint."""
