-- One row per Bitrix24 deal (newest landed version), typed. crm.deal.list sends every scalar
-- as a string: ids and money are cast, 'Y'/'N' become booleans, ISO dates with the portal's
-- offset become local timestamps in the reporting zone.
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__deals') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        latest.account,
        latest.record_id,
        {{ json_str('latest.payload', 'STAGE_ID') }} as stage_id,
        nullif(trim({{ json_str('latest.payload', 'CATEGORY_ID') }}), '') as category_text,
        upper(nullif(trim({{ json_str('latest.payload', 'STAGE_SEMANTIC_ID') }}), ''))
            as stage_semantic_text,
        {{ yn_to_bool(json_str('latest.payload', 'CLOSED')) }} as closed_flag,
        latest.payload,
        latest.extracted_at
    from latest

),

-- stage semantics of the portal, for a row that lacks STAGE_SEMANTIC_ID
stages as (

    select account, category_id, status_id, semantics
    from {{ ref('stg_bitrix24__stages') }}
    where entity_id <> 'STATUS'

),

typed as (

    select
        fields.*,
        -- CATEGORY_ID; else the n of a `C{n}:` stage prefix; else the default pipeline 0
        coalesce(
            cast(fields.category_text as integer),
            case
                when fields.stage_id like 'C%:%'
                    then cast(substr(fields.stage_id, 2, strpos(fields.stage_id, ':') - 2)
                        as integer)
            end,
            0
        ) as category_id
    from fields

),

-- P open, S won, F lost: STAGE_SEMANTIC_ID, else the semantics of the deal's stage
with_semantics as (

    select
        typed.*,
        coalesce(typed.stage_semantic_text, stages.semantics, 'P') as stage_semantic
    from typed
    left join stages
        on typed.account = stages.account
        and typed.category_id = stages.category_id
        and typed.stage_id = stages.status_id

),

closed as (

    select
        with_semantics.*,
        -- CLOSED; a row without it is closed when its stage is final
        coalesce(closed_flag, stage_semantic in ('S', 'F')) as is_closed
    from with_semantics

),

renamed as (

    select
        ----------  ids
        account,
        cast(record_id as bigint) as deal_id,
        {{ optional_id(json_str('payload', 'LEAD_ID')) }} as source_lead_id,
        {{ optional_id(json_str('payload', 'CONTACT_ID')) }} as contact_id,
        {{ optional_id(json_str('payload', 'COMPANY_ID')) }} as company_id,
        category_id,
        stage_id,

        ----------  semantics
        stage_semantic,
        stage_semantic = 'S' as is_won,
        stage_semantic = 'F' as is_lost,
        is_closed,

        ----------  text
        {{ safe_text(json_str('payload', 'TITLE')) }} as deal_title,
        -- the loss-reason user field named by var `bitrix24_loss_reason_field` (null: none)
        {{ bitrix24_loss_reason_field('payload') }} as loss_reason_field_value,

        ----------  money
        {{ parse_money(json_str('payload', 'OPPORTUNITY')) }} as amount,
        nullif(upper(trim({{ json_str('payload', 'CURRENCY_ID') }})), '') as currency,

        ----------  people
        {{ optional_id(json_str('payload', 'ASSIGNED_BY_ID')) }} as responsible_user_id,

        ----------  UTM (trimmed, lower-cased, null when empty)
        {{ tag_value(json_str('payload', 'UTM_SOURCE')) }} as utm_source,
        {{ tag_value(json_str('payload', 'UTM_MEDIUM')) }} as utm_medium,
        {{ tag_value(json_str('payload', 'UTM_CAMPAIGN')) }} as utm_campaign,
        {{ tag_value(json_str('payload', 'UTM_CONTENT')) }} as utm_content,
        {{ tag_value(json_str('payload', 'UTM_TERM')) }} as utm_term,

        ----------  timestamps (local, reporting time zone)
        {{ iso_to_local(json_str('payload', 'DATE_CREATE')) }} as created_at,
        {{ iso_to_local(json_str('payload', 'DATE_MODIFY')) }} as updated_at,
        -- CLOSEDATE of an open deal is only the planned close date: kept for closed deals
        case
            when is_closed then {{ iso_to_local(json_str('payload', 'CLOSEDATE')) }}
        end as closed_at,

        ----------  lineage
        extracted_at as _extracted_at

    from closed

)

select * from renamed
