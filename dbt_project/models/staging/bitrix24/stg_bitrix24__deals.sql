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

-- the deal's fields as text, each payload parsed once (macros/json.sql); the payload stays
-- for the loss-reason user field a var names
parsed as (

    select
        latest.account,
        latest.record_id,
        latest.payload,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'stage_id': 'STAGE_ID',
            'category_raw': 'CATEGORY_ID',
            'stage_semantic_raw': 'STAGE_SEMANTIC_ID',
            'closed_raw': 'CLOSED',
            'lead_id': 'LEAD_ID',
            'contact_id': 'CONTACT_ID',
            'company_id': 'COMPANY_ID',
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
            'closedate': 'CLOSEDATE',
        }) }}
    from latest

),

fields as (

    select
        parsed.*,
        nullif(trim(parsed.category_raw), '') as category_text,
        upper(nullif(trim(parsed.stage_semantic_raw), '')) as stage_semantic_text,
        {{ yn_to_bool('parsed.closed_raw') }} as closed_flag
    from parsed

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
        {{ optional_id('lead_id') }} as source_lead_id,
        {{ optional_id('contact_id') }} as contact_id,
        {{ optional_id('company_id') }} as company_id,
        category_id,
        stage_id,

        ----------  semantics
        stage_semantic,
        stage_semantic = 'S' as is_won,
        stage_semantic = 'F' as is_lost,
        is_closed,

        ----------  text
        {{ safe_text('title') }} as deal_title,
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
        -- CLOSEDATE of an open deal is only the planned close date: kept for closed deals
        case
            when is_closed then {{ iso_to_local('closedate') }}
        end as closed_at,

        ----------  lineage
        extracted_at as _extracted_at

    from closed

)

select * from renamed
