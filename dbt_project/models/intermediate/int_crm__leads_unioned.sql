-- One row per inquiry across both CRMs, in one shape (ids as text), before any enrichment:
--   * an amoCRM lead that is not deleted;
--   * a Bitrix24 deal: created_at and UTM tags of the Bitrix24 lead it was converted from,
--     when it has one (the inquiry started there);
--   * a Bitrix24 lead that did not become a deal (still in work, or junk).
-- lead_id: amocrm_<id>, bitrix24_deal_<id>, bitrix24_lead_<id>. pipeline_id: the amoCRM
-- pipeline id, Bitrix24 `deal_<category id>` for deals and `lead` for leads.
-- loss_reason_name: amoCRM's loss reason; Bitrix24 (docs metrics.md, "Funnel") a lost deal's or
-- lead's user field named by var `bitrix24_loss_reason_field` when filled, else the name of the
-- failure (F) stage it is in (a funnel may have several: LOSE, APOLOGY, custom ones).
with

amocrm_leads as (

    select * from {{ ref('stg_amocrm__leads') }}
    where not is_deleted

),

amocrm_loss_reasons as (

    select * from {{ ref('stg_amocrm__loss_reasons') }}

),

b24_deals as (

    select * from {{ ref('stg_bitrix24__deals') }}

),

b24_leads as (

    select * from {{ ref('stg_bitrix24__leads') }}

),

b24_stages as (

    select * from {{ ref('stg_bitrix24__stages') }}

),

amocrm as (

    select
        'amocrm' as crm,
        amocrm_leads.account,
        'amocrm_' || cast(amocrm_leads.lead_id as varchar) as lead_id,
        cast(amocrm_leads.lead_id as varchar) as source_lead_id,
        amocrm_leads.lead_name,
        cast(amocrm_leads.pipeline_id as varchar) as pipeline_id,
        cast(amocrm_leads.status_id as varchar) as status_id,
        amocrm_leads.status_id = {{ var('won_status_id') }} as is_won,
        amocrm_leads.status_id = {{ var('lost_status_id') }} as is_lost,
        amocrm_leads.created_at,
        amocrm_leads.updated_at,
        amocrm_leads.closed_at,
        amocrm_leads.price as amount,
        cast(amocrm_leads.responsible_user_id as varchar) as responsible_user_id,
        amocrm_loss_reasons.loss_reason_name,
        amocrm_leads.utm_source,
        amocrm_leads.utm_medium,
        amocrm_leads.utm_campaign,
        case when amocrm_leads.main_contact_id is not null
            then {{ node_id('amocrm', 'amocrm_leads.account', 'amocrm_leads.main_contact_id') }}
        end as contact_node_id,
        cast(amocrm_leads.company_id as varchar) as company_id
    from amocrm_leads
    left join amocrm_loss_reasons
        on amocrm_leads.account = amocrm_loss_reasons.account
        and amocrm_leads.loss_reason_id = amocrm_loss_reasons.loss_reason_id

),

bitrix24_deals as (

    select
        'bitrix24' as crm,
        b24_deals.account,
        'bitrix24_deal_' || cast(b24_deals.deal_id as varchar) as lead_id,
        cast(b24_deals.deal_id as varchar) as source_lead_id,
        b24_deals.deal_title as lead_name,
        'deal_' || cast(b24_deals.category_id as varchar) as pipeline_id,
        b24_deals.stage_id as status_id,
        b24_deals.is_won,
        b24_deals.is_lost,
        coalesce(origin.created_at, b24_deals.created_at) as created_at,
        b24_deals.updated_at,
        b24_deals.closed_at,
        b24_deals.amount,
        cast(b24_deals.responsible_user_id as varchar) as responsible_user_id,
        case when b24_deals.is_lost
            then coalesce(b24_deals.loss_reason_field_value, deal_stage.stage_name)
        end as loss_reason_name,
        -- the deal's own tags, or (when it has none) those of the lead it came from
        case when b24_deals.utm_source is null and b24_deals.utm_medium is null
            then origin.utm_source else b24_deals.utm_source end as utm_source,
        case when b24_deals.utm_source is null and b24_deals.utm_medium is null
            then origin.utm_medium else b24_deals.utm_medium end as utm_medium,
        case when b24_deals.utm_source is null and b24_deals.utm_medium is null
            then origin.utm_campaign else b24_deals.utm_campaign end as utm_campaign,
        case
            when coalesce(b24_deals.contact_id, origin.contact_id) is not null
                then {{ node_id('bitrix24', 'b24_deals.account',
                                'coalesce(b24_deals.contact_id, origin.contact_id)') }}
            when origin.lead_id is not null
                then {{ node_id('bitrix24_lead', 'b24_deals.account', 'origin.lead_id') }}
        end as contact_node_id,
        cast(b24_deals.company_id as varchar) as company_id
    from b24_deals
    left join b24_leads as origin
        on b24_deals.account = origin.account
        and b24_deals.source_lead_id = origin.lead_id
    left join b24_stages as deal_stage
        on b24_deals.account = deal_stage.account
        and deal_stage.entity_id <> 'STATUS'
        and b24_deals.category_id = deal_stage.category_id
        and b24_deals.stage_id = deal_stage.status_id

),

bitrix24_leads as (

    select
        'bitrix24' as crm,
        b24_leads.account,
        'bitrix24_lead_' || cast(b24_leads.lead_id as varchar) as lead_id,
        cast(b24_leads.lead_id as varchar) as source_lead_id,
        b24_leads.lead_title as lead_name,
        'lead' as pipeline_id,
        b24_leads.status_id,
        false as is_won,  -- a lead is never a sale: the deal it turns into is
        b24_leads.is_junk as is_lost,
        b24_leads.created_at,
        b24_leads.updated_at,
        b24_leads.closed_at,
        b24_leads.amount,
        cast(b24_leads.responsible_user_id as varchar) as responsible_user_id,
        case when b24_leads.is_junk
            then coalesce(b24_leads.loss_reason_field_value, lead_status.stage_name)
        end as loss_reason_name,
        b24_leads.utm_source,
        b24_leads.utm_medium,
        b24_leads.utm_campaign,
        -- no contact yet: the lead itself is the node (its own phone and e-mail)
        case
            when b24_leads.contact_id is not null
                then {{ node_id('bitrix24', 'b24_leads.account', 'b24_leads.contact_id') }}
            else {{ node_id('bitrix24_lead', 'b24_leads.account', 'b24_leads.lead_id') }}
        end as contact_node_id,
        cast(null as varchar) as company_id
    from b24_leads
    left join b24_stages as lead_status
        on b24_leads.account = lead_status.account
        and lead_status.entity_id = 'STATUS'
        and b24_leads.status_id = lead_status.status_id
    where not exists (
        select 1 from b24_deals
        where b24_deals.account = b24_leads.account
            and b24_deals.source_lead_id = b24_leads.lead_id
    )

),

unioned as (

    select * from amocrm
    union all
    select * from bitrix24_deals
    union all
    select * from bitrix24_leads

)

select * from unioned
