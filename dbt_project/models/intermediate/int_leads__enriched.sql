-- One row per lead (inquiry, both CRMs) created up to the as-of date, with its channel, its
-- customer (through its contact's identity-graph node), its stage, manager and loss reason.
with

leads as (

    select * from {{ ref('int_crm__leads_unioned') }}

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

    select * from {{ ref('int_crm__pipeline_stages') }}

),

users as (

    select * from {{ ref('int_crm__users') }}

),

joined as (

    select
        leads.crm,
        leads.account,
        leads.lead_id,
        leads.lead_name,
        leads.pipeline_id,
        stages.pipeline_name,
        leads.status_id,
        stages.stage_name,
        leads.is_won,
        leads.is_lost,
        not leads.is_won and not leads.is_lost as is_open,
        leads.created_at,
        {{ month_start('leads.created_at') }} as created_month,
        leads.updated_at,
        leads.closed_at,
        leads.amount,
        leads.responsible_user_id,
        users.user_name as manager_name,
        leads.loss_reason_name,
        leads.utm_source,
        leads.utm_medium,
        leads.utm_campaign,
        channels.channel,
        leads.contact_node_id,
        leads.company_id,
        -- a lead without any contact stands for a customer of its own
        coalesce(customers.customer_id, 'l_' || leads.lead_id) as customer_id
    from leads
    cross join as_of
    left join channels
        on leads.account = channels.account
        and leads.lead_id = channels.lead_id
    left join customers
        on leads.contact_node_id = customers.node_id
    left join stages
        on leads.crm = stages.crm
        and leads.account = stages.account
        and leads.pipeline_id = stages.pipeline_id
        and leads.status_id = stages.status_id
    left join users
        on leads.crm = users.crm
        and leads.account = users.account
        and leads.responsible_user_id = users.user_id
    where cast(leads.created_at as date) <= as_of.as_of_date

)

select * from joined
