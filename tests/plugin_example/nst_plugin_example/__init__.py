"""An example third-party plug-in for nst_core (installed by the test suite)."""
