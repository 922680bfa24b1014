//! AWS Organizations `ListAccounts`: the accounts an organization install covers when
//! `ECS_TUNNELS_ACCOUNTS=organization`.

use super::AwsError;

/// The ids of the organization's ACTIVE accounts (suspended and closing accounts are
/// left out), in the order Organizations lists them, every page read.
pub async fn active_accounts(sdk: &aws_config::SdkConfig) -> Result<Vec<String>, AwsError> {
    let client = aws_sdk_organizations::Client::new(sdk);
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = client
            .list_accounts()
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("organizations:ListAccounts", e))?;
        out.extend(
            page.accounts()
                .iter()
                .filter(|a| {
                    a.state().map_or_else(
                        || a.status().is_none_or(|s| s.as_str() == "ACTIVE"),
                        |s| s.as_str() == "ACTIVE",
                    )
                })
                .filter_map(|a| a.id().map(str::to_string)),
        );
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}
