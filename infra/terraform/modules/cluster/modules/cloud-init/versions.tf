terraform {
  # mock_provider and expect_failures in `terraform test` need 1.7+.
  required_version = ">= 1.7"
}
