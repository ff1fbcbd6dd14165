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

-- the lead's fields as text, each payload parsed once (macros/json.sql); the payload stays
-- for the loss-reason user field a var names
parsed as (

    select
        latest.account,
        latest.record_id,
        latest.payload,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'status_id': 'STATUS_ID',
            'status_semantic_raw': 'STATUS_SEMANTIC_ID',
            'contact_id': 'CONTACT_ID',
            'title': 'TITLE',
            'opportunity': 'OPPORTUNITY',
            'currency_id': 'CURRENCY_ID',
            'assigned_by_id': 'ASSIGNED_BY_ID',
            'utm_source': 'UTM_SOURCE',
            'utm_medium': 'UTM_MEDIUM',
            'utm_campaign': 'UTM_CAMPAIGN',
            'utm_content': 'UTM_CONTENT',
            'utm_term': 'UTM_TERM',
            'date_create': 'DATE_CREATE',
            'date_modify': 'DATE_MODIFY',
            'date_closed': 'DATE_CLOSED',
        }) }}
    from latest

),

fields as (

    select
        parsed.*,
        upper(nullif(trim(parsed.status_semantic_raw), '')) as status_semantic_text
    from parsed

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
        {{ optional_id('contact_id') }} as contact_id,
        status_id,

        ----------  semantics: P in work, S converted, F junk
        status_semantic,
        status_semantic = 'S' as is_converted,
        status_semantic = 'F' as is_junk,

        ----------  text
        {{ safe_text('title') }} as lead_title,
        -- the loss-reason user field named by var `bitrix24_loss_reason_field` (null: none)
        {{ bitrix24_loss_reason_field('payload') }} as loss_reason_field_value,

        ----------  money
        {{ parse_money('opportunity') }} as amount,
        nullif(upper(trim(currency_id)), '') as currency,

        ----------  people
        {{ optional_id('assigned_by_id') }} as responsible_user_id,

        ----------  UTM (trimmed, lower-cased, null when empty)
        {{ utm_columns() }},

        ----------  timestamps (local, reporting time zone)
        {{ iso_to_local('date_create') }} as created_at,
        {{ iso_to_local('date_modify') }} as updated_at,
        {{ iso_to_local('date_closed') }} as closed_at,

        ----------  lineage
        extracted_at as _extracted_at

    from with_semantics

)

select * from renamed
