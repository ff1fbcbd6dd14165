-- One row per (non-deleted) lead created up to the as-of date, with its channel, its
-- customer (through the main contact), its stage, manager and loss reason.
with

leads as (

    select * from {{ ref('stg_amocrm__leads') }}

),

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

channels as (

    select * from {{ ref('int_leads__channel_mapped') }}

),

customers as (

    select * from {{ ref('int_customers__resolved') }}

),

stages as (

    select * from {{ ref('stg_amocrm__pipeline_statuses') }}

),

users as (

    select * from {{ ref('stg_amocrm__users') }}

),

loss_reasons as (

    select * from {{ ref('stg_amocrm__loss_reasons') }}

),

joined as (

    select
        leads.account,
        leads.lead_id,
        leads.lead_name,
        leads.pipeline_id,
        stages.pipeline_name,
        leads.status_id,
        stages.stage_name,
        leads.status_id = {{ var('won_status_id') }} as is_won,
        leads.status_id = {{ var('lost_status_id') }} as is_lost,
        leads.status_id not in ({{ var('won_status_id') }}, {{ var('lost_status_id') }})
            as is_open,
        leads.created_at,
        {{ month_start('leads.created_at') }} as created_month,
        leads.updated_at,
        leads.closed_at,
        leads.price as amount,
        leads.responsible_user_id,
        users.user_name as manager_name,
        leads.loss_reason_id,
        loss_reasons.loss_reason_name,
        leads.utm_source,
        leads.utm_medium,
        leads.utm_campaign,
        channels.channel,
        leads.main_contact_id,
        -- a lead without any contact stands for a customer of its own
        coalesce(customers.customer_id, 'l_' || cast(leads.lead_id as varchar)) as customer_id
    from leads
    cross join as_of
    left join channels
        on leads.account = channels.account
        and leads.lead_id = channels.lead_id
    left join customers
        on leads.account = customers.account
        and leads.main_contact_id = customers.contact_id
    left join stages
        on leads.account = stages.account
        and leads.pipeline_id = stages.pipeline_id
        and leads.status_id = stages.status_id
    left join users
        on leads.account = users.account
        and leads.responsible_user_id = users.user_id
    left join loss_reasons
        on leads.account = loss_reasons.account
        and leads.loss_reason_id = loss_reasons.loss_reason_id
    where not leads.is_deleted
        and cast(leads.created_at as date) <= as_of.as_of_date

)

select * from joined
