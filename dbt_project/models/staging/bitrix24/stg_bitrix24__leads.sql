-- One row per Bitrix24 lead (newest landed version), typed. A lead is closed as converted
-- (STATUS_SEMANTIC_ID 'S': it became a deal, see stg_bitrix24__deals.source_lead_id) or as
-- junk ('F'); strings are cast as in stg_bitrix24__deals.
with

source as (

    {{ raw_source('bitrix24', 'bitrix24__leads') }}

),

latest as (

    {{ latest_version('source') }}

),

fields as (

    select
        latest.account,
        latest.record_id,
        {{ json_str('latest.payload', 'STATUS_ID') }} as status_id,
        upper(nullif(trim({{ json_str('latest.payload', 'STATUS_SEMANTIC_ID') }}), ''))
            as status_semantic_text,
        latest.payload,
        latest.extracted_at
    from latest

),

-- lead statuses of the portal, for a row that lacks STATUS_SEMANTIC_ID
statuses as (

    select account, status_id, semantics
    from {{ ref('stg_bitrix24__stages') }}
    where entity_id = 'STATUS'

),

with_semantics as (

    select
        fields.*,
        coalesce(fields.status_semantic_text, statuses.semantics, 'P') as status_semantic
    from fields
    left join statuses
        on fields.account = statuses.account
        and fields.status_id = statuses.status_id

),

renamed as (

    select
        ----------  ids
        account,
        cast(record_id as bigint) as lead_id,
        {{ optional_id(json_str('payload', 'CONTACT_ID')) }} as contact_id,
        status_id,

        ----------  semantics: P in work, S converted, F junk
        status_semantic,
        status_semantic = 'S' as is_converted,
        status_semantic = 'F' as is_junk,

        ----------  text
        {{ safe_text(json_str('payload', 'TITLE')) }} as lead_title,
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
        {{ iso_to_local(json_str('payload', 'DATE_CLOSED')) }} as closed_at,

        ----------  lineage
        extracted_at as _extracted_at

    from with_semantics

)

select * from renamed
