"""kerberos layer."""
