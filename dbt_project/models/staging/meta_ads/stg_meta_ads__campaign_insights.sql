-- One row per (account, day, campaign) of Meta Ads Insights (newest landed version).
-- Rows are level=campaign, time_increment=1: date_start is the day in the ad account's time
-- zone; every number is a string and spend is in the account currency's major units,
-- without taxes (Meta bills VAT on top of spend).
with

source as (

    {{ raw_source('meta_ads', 'meta_ads__campaign_insights') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        account,
        record_id,
        {{ json_str('payload', 'date_start') }} as report_date,
        {{ json_str('payload', 'campaign_id') }} as campaign_id,
        {{ safe_text(json_str('payload', 'campaign_name')) }} as campaign_name,
        coalesce({{ json_str('payload', 'impressions') }}, '0') as impressions,
        coalesce({{ json_str('payload', 'clicks') }}, '0') as clicks,
        coalesce({{ json_str('payload', 'spend') }}, '0') as cost,
        {{ json_str('payload', 'account_currency') }} as currency,
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
        currency,

        ----------  numerics
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        {{ money('cost') }} as cost,

        ----------  booleans
        false as is_vat_included,

        ----------  dates
        cast(report_date as date) as report_date,

        ----------  lineage
        extracted_at as _extracted_at

    from fields

)

select * from renamed
