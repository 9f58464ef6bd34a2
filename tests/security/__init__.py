"""The attack suite of issue 7: each test is one door that must stay shut."""
