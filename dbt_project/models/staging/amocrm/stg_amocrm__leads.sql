-- One row per amoCRM lead (newest landed version), typed, timestamps in the reporting zone.
-- A deleted lead drops out of the normal leads list, so the version we hold still says
-- is_deleted = false: the deletion is learnt from stg_amocrm__deleted_leads (see is_deleted).
with

source as (

    {{ raw_source('amocrm', 'amocrm__leads') }}

),

latest as (

    {{ latest_version('source') }}

),

-- the lead's own fields as text, each payload parsed once (macros/json.sql)
fields as (

    select
        latest.account,
        latest.record_id,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'pipeline_id': 'pipeline_id',
            'status_id': 'status_id',
            'responsible_user_id': 'responsible_user_id',
            'loss_reason_id': 'loss_reason_id',
            'created_by': 'created_by',
            'company_id': '_embedded.companies.0.id',
            'lead_name': 'name',
            'price': 'price',
            'is_deleted': 'is_deleted',
            'created_at': 'created_at',
            'updated_at': 'updated_at',
            'closed_at': 'closed_at',
        }) }}
    from latest

),

-- UTM tags are `tracking_data` custom fields, identified by their predefined field_code
custom_fields as (

    select
        latest.account,
        latest.record_id,
        {{ json_str('cf.value', 'field_code') }} as field_code,
        nullif(lower(trim({{ json_str('cf.value', 'values.0.value') }})), '') as field_value
    from latest
    {{ json_array_elements('latest.payload', 'custom_fields_values', 'cf') }}

),

utm as (

    select
        account,
        record_id,
        max(case when field_code = 'UTM_SOURCE' then field_value end) as utm_source,
        max(case when field_code = 'UTM_MEDIUM' then field_value end) as utm_medium,
        max(case when field_code = 'UTM_CAMPAIGN' then field_value end) as utm_campaign,
        max(case when field_code = 'UTM_CONTENT' then field_value end) as utm_content,
        max(case when field_code = 'UTM_TERM' then field_value end) as utm_term
    from custom_fields
    where field_code is not null
    group by account, record_id

),

-- the main contact of the lead; the first linked contact when none is flagged main
-- (macros/main_contact.sql)
main_contact as (

    {{ amocrm_main_contact('latest') }}

),

deleted_leads as (

    select account, lead_id, deleted_at
    from {{ ref('stg_amocrm__deleted_leads') }}

),

renamed as (

    select
        ----------  ids
        fields.account,
        cast(fields.record_id as bigint) as lead_id,
        cast(fields.pipeline_id as bigint) as pipeline_id,
        cast(fields.status_id as bigint) as status_id,
        cast(fields.responsible_user_id as bigint)
            as responsible_user_id,
        cast(fields.loss_reason_id as bigint) as loss_reason_id,
        cast(fields.created_by as bigint) as created_by,
        main_contact.contact_id as main_contact_id,
        -- a lead links at most one company
        cast(fields.company_id as bigint)
            as company_id,

        ----------  text
        {{ safe_text('fields.lead_name') }} as lead_name,
        {{ safe_text('utm.utm_source') }} as utm_source,
        {{ safe_text('utm.utm_medium') }} as utm_medium,
        {{ safe_text('utm.utm_campaign') }} as utm_campaign,
        {{ safe_text('utm.utm_content') }} as utm_content,
        {{ safe_text('utm.utm_term') }} as utm_term,

        ----------  numerics
        cast(fields.price as numeric(18, 2)) as price,

        ----------  booleans
        -- deleted when the element says so, or when amoCRM listed it as deleted at or after
        -- the version we hold (a lead restored later comes back with a newer updated_at)
        coalesce(fields.is_deleted = 'true', false)
            or (
                deleted_leads.lead_id is not null
                and coalesce(
                    deleted_leads.deleted_at
                        >= {{ epoch_to_local('fields.updated_at') }},
                    true
                )
            ) as is_deleted,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local('fields.created_at') }} as created_at,
        {{ epoch_to_local('fields.updated_at') }} as updated_at,
        {{ epoch_to_local('fields.closed_at') }} as closed_at,

        ----------  lineage
        fields.extracted_at as _extracted_at

    from fields
    left join utm
        on fields.account = utm.account
        and fields.record_id = utm.record_id
    left join main_contact
        on fields.account = main_contact.account
        and fields.record_id = main_contact.record_id
    left join deleted_leads
        on fields.account = deleted_leads.account
        and cast(fields.record_id as bigint) = deleted_leads.lead_id

)

select * from renamed
