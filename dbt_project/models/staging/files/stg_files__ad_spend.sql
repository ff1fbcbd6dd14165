-- One row per (account, platform, day, campaign) of offline ad spend from CSV/Parquet files
-- (newest landed version). Every value arrives as text exactly as in the file, already
-- checked against the file contract (extractors/files.py): dates are YYYY-MM-DD or
-- DD.MM.YYYY (optionally with a time), money may use spaces as thousands separators and a
-- decimal comma ("15 000,50").
with

source as (

    {{ raw_source('files', 'files__ad_spend') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        account,
        record_id,
        trim({{ json_str('payload', 'date') }}) as date_text,
        trim({{ json_str('payload', 'platform') }}) as platform_raw,
        trim({{ json_str('payload', 'campaign_id') }}) as campaign_id,
        {{ safe_text("nullif(trim(" ~ json_str('payload', 'campaign_name') ~ "), '')") }}
            as campaign_name,
        {{ json_str('payload', 'spend') }} as spend_text,
        -- a foreign currency converted with the rates file (extractors/files.py) is in the
        -- account currency x the rate of its day
        cast({{ json_str('payload', '_rate') }} as numeric(18, 6)) as exchange_rate,
        {{ file_currency("case when " ~ json_str('payload', '_rate') ~ " is null then "
                         ~ json_str('payload', 'currency') ~ " end") }} as currency,
        nullif(trim({{ json_str('payload', 'impressions') }}), '') as impressions,
        nullif(trim({{ json_str('payload', 'clicks') }}), '') as clicks,
        lower(trim({{ json_str('payload', 'vat_included') }})) as vat_included_text,
        {{ json_str('payload', '_file') }} as file_name,
        {{ json_str('payload', '_line') }} as file_line,
        payload_hash,
        extracted_at
    from latest

),

parsed as (

    select
        account,
        record_id,
        -- 'Yandex Direct' / 'yandex-direct' -> 'yandex_direct'
        {{ safe_text("replace(replace(lower(platform_raw), ' ', '_'), '-', '_')") }} as platform,
        platform_raw,
        campaign_id,
        campaign_name,
        {{ parse_date_text('date_text') }} as report_date,
        -- spaces as thousands separators, a lone decimal comma (macros/text_parsing.sql)
        {{ money(parse_money('spend_text') ~ ' * coalesce(exchange_rate, 1)') }} as cost,
        currency,
        impressions,
        clicks,
        case
            when vat_included_text in ('true', 'yes', 'y', 't', '1', 'да') then true
            when vat_included_text in ('false', 'no', 'n', 'f', '0', 'нет') then false
        end as is_vat_included,
        file_name,
        file_line,
        payload_hash,
        extracted_at
    from fields

),

-- the raw key holds the date as written: the same day written two ways is one row, the
-- newest extracted wins
deduplicated as (

    select ranked.*
    from (
        select
            parsed.*,
            row_number() over (
                partition by account, platform, report_date, campaign_id
                order by extracted_at desc, payload_hash desc
            ) as day_rank
        from parsed
    ) as ranked
    where ranked.day_rank = 1

),

renamed as (

    select
        ----------  ids
        account,
        record_id as campaign_day_id,
        campaign_id,

        ----------  text
        platform,
        {{ safe_text('platform_raw') }} as platform_raw,
        campaign_name,
        currency,

        ----------  numerics
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        cost,

        ----------  booleans
        is_vat_included,

        ----------  dates
        report_date,

        ----------  lineage
        file_name as _file,
        cast(file_line as bigint) as _line,
        extracted_at as _extracted_at

    from deduplicated

)

select * from renamed
