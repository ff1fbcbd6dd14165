-- One row per (account, day, campaign) of Google Ads statistics (newest landed version).
-- segments.date is a day in the account time zone; cost is cost_micros / 1,000,000 in the
-- account currency, without VAT (Google reports cost before taxes).
-- REST JSON omits zero-valued metrics (proto3 defaults), so a missing metric is 0.
with

source as (

    {{ raw_source('google_ads', 'google_ads__campaign_stats') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        account,
        record_id,
        {{ json_str('payload', 'segments.date') }} as report_date,
        {{ json_str('payload', 'campaign.id') }} as campaign_id,
        {{ safe_text(json_str('payload', 'campaign.name')) }} as campaign_name,
        {{ json_str('payload', 'campaign.status') }} as campaign_status,
        coalesce({{ json_str('payload', 'metrics.impressions') }}, '0') as impressions,
        coalesce({{ json_str('payload', 'metrics.clicks') }}, '0') as clicks,
        coalesce({{ json_str('payload', 'metrics.costMicros') }}, '0') as cost_micros,
        {{ json_str('payload', 'customer.currencyCode') }} as currency,
        {{ json_str('payload', 'customer.timeZone') }} as account_time_zone,
        extracted_at
    from latest

),

renamed as (

    select
        ----------  ids
        account,
        record_id as campaign_day_id,
        campaign_id,

        ----------  text
        campaign_name,
        campaign_status,
        currency,
        account_time_zone,

        ----------  numerics
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        -- Google sends money in micros (x 1,000,000) as an int64 string
        cast(cast(cost_micros as numeric(38, 0)) / 1000000 as numeric(18, 2)) as cost,

        ----------  booleans
        false as is_vat_included,

        ----------  dates
        cast(report_date as date) as report_date,

        ----------  lineage
        extracted_at as _extracted_at

    from fields

)

select * from renamed
